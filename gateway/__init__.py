"""provledger's REST gateway: SPEC §3 over HTTP, in front of one or more ledger nodes.

Run it with `python -m gateway --config gateway.toml`. It holds no state of its own
beyond caches: every answer comes from a node over gRPC (writes from the leader),
encoded as JSON with hex hashes, C2SP tiles and checkpoints, or RFC 9457 problem
details. Proofs for public reads are computed here, as a tlog-tiles client would, from
the node's hash tiles checked against the node's latest checkpoint (`_proofs`).
"""

from gateway._app import create_app
from gateway._config import GatewayConfig, TlsConfig
from gateway._problems import Problem, ProblemError
from gateway._tiles import TileIndex, TilePathError, format_tile_index, parse_tile_index

__all__ = [
    "GatewayConfig",
    "Problem",
    "ProblemError",
    "TileIndex",
    "TilePathError",
    "TlsConfig",
    "create_app",
    "format_tile_index",
    "parse_tile_index",
]
