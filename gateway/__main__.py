"""`python -m gateway --config gateway.toml [--listen HOST:PORT]`: serve the REST gateway.

Settings come from the TOML file, then `PROVLEDGER_GATEWAY_*` environment variables
(`_CONFIG`, `_LISTEN`, `_NODES` as a comma-separated list), then flags, each overriding
the one before.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import uvicorn

from gateway._app import create_app
from gateway._config import GatewayConfig

log = logging.getLogger("gateway")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gateway", description="provledger REST gateway (SPEC §3)"
    )
    parser.add_argument("--config", type=Path, help="gateway TOML file")
    parser.add_argument("--listen", help="HOST:PORT to serve HTTP on (default 127.0.0.1:8080)")
    parser.add_argument(
        "--node",
        action="append",
        dest="nodes",
        metavar="HOST:PORT",
        help="a node's gRPC address (repeatable; replaces the file's nodes)",
    )
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    return parser


def build_config(args: argparse.Namespace, environ: Mapping[str, str]) -> GatewayConfig:
    raw: dict[str, Any] = {}
    config_path = args.config or (
        Path(environ["PROVLEDGER_GATEWAY_CONFIG"])
        if "PROVLEDGER_GATEWAY_CONFIG" in environ
        else None
    )
    base = Path()
    if config_path is not None:
        with open(config_path, "rb") as f:
            raw = tomllib.load(f)
        base = config_path.parent
    if "PROVLEDGER_GATEWAY_LISTEN" in environ:
        raw["listen"] = environ["PROVLEDGER_GATEWAY_LISTEN"]
    if "PROVLEDGER_GATEWAY_NODES" in environ:
        raw["nodes"] = [
            n.strip() for n in environ["PROVLEDGER_GATEWAY_NODES"].split(",") if n.strip()
        ]
    if args.listen:
        raw["listen"] = args.listen
    if args.nodes:
        raw["nodes"] = args.nodes
    return GatewayConfig.from_mapping(raw, base)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = build_config(args, os.environ)
    except (OSError, ValueError, tomllib.TOMLDecodeError) as exc:
        print(f"gateway: bad configuration: {exc}", file=sys.stderr)
        return 2
    app = create_app(config)
    log.info(
        "gateway on http://%s:%d in front of %s", config.host, config.port, ", ".join(config.nodes)
    )
    uvicorn.run(
        app,
        host=config.host,
        port=config.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level=args.log_level,
        server_header=False,
        # The gateway is the edge; forwarded headers from unknown peers are not trusted.
        proxy_headers=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
