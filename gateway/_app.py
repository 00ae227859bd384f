"""The REST gateway: every row of SPEC §3 as a FastAPI route over the nodes' gRPC API.

Routes take the raw `Request`, parse their parameters with `_params` (400, never 422,
for a bad parameter) and answer ready-encoded bytes; the pydantic models in `_models`
only describe those bytes in OpenAPI. Errors of every origin become problem+json at this
edge: `ProblemError` and HTTP errors in exception handlers, anything unexpected in
`_LastResort`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway import _encode as encode
from gateway import _models as models
from gateway._batch import encode_batch_result, receipt_json, request_digest, split_batch
from gateway._cache import ResponseCache, credential_key
from gateway._config import GatewayConfig
from gateway._metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from gateway._metrics import Metrics
from gateway._nodes import NodePool
from gateway._params import HexParam, IntParam, StrParam, openapi_parameters
from gateway._problems import (
    PROBLEM_MEDIA_TYPE,
    Problem,
    ProblemError,
    bad_request,
    problem_response,
)
from gateway._proofs import LocalProofs, NodeTiles, TreeHead
from gateway._tiles import TilePathError, parse_tile_index, parse_tile_level
from provledger.events import EVENT_TYPES
from provledger.v1 import ledger_pb2 as pb

__all__ = ["create_app"]

log = logging.getLogger(__name__)

MAX_IDEMPOTENCY_KEY = 256
IMMUTABLE = "public, max-age=31536000, immutable"
JSON = "application/json"

# --- parameters (each declared once: parsing and OpenAPI) ---------------------------

P_INDEX = IntParam("index", "leaf index", where="path")
P_HEIGHT = IntParam("height", "block height", where="path")
P_SOURCE = StrParam("source", "event source (with id: look one event up)", max_length=512)
P_ID = StrParam("id", "event id (with source: look one event up)", max_length=128)
P_TYPE = StrParam("type", "only events of this type", choices=tuple(sorted(EVENT_TYPES)))
P_SUBJECT = StrParam("subject", "only events with this subject", max_length=1024)
P_AFTER = IntParam("after", "only entries with an index greater than this")
P_LIMIT = IntParam("limit", "page size", default=100, minimum=1, maximum=1000)
P_PROOF_INDEX = IntParam("index", "leaf index (or give leaf_hash)")
P_LEAF_HASH = HexParam("leaf_hash", "leaf hash in hex (instead of index)")
P_TREE_SIZE = IntParam(
    "tree_size", "tree size to prove against; absent: the latest checkpoint, which is returned"
)
P_FIRST = IntParam("first", "the older tree size", required=True)
P_SECOND = IntParam("second", "the newer tree size", required=True)
P_FROM = IntParam("from", "first block height", default=0)
P_TO = IntParam("to", "last block height (default: the latest)")
P_BLOCK_LIMIT = IntParam("limit", "at most this many blocks", default=100, minimum=1, maximum=1000)

_TILE_N_PARAM = {
    "name": "N",
    "in": "path",
    "required": True,
    "description": "tile index as C2SP path elements (x001/x234/067), then .p/<W> for a "
    "partial tile of width W",
    # Canonical form only: no leading x000 element, at most six elements, W from 1 to 255.
    "schema": {
        "type": "string",
        "pattern": r"^(x(00[1-9]|0[1-9][0-9]|[1-9][0-9]{2})/(x[0-9]{3}/){0,4})?[0-9]{3}"
        r"(\.p/([1-9]|[1-9][0-9]|1[0-9]{2}|2[0-4][0-9]|25[0-5]))?$",
    },
}
_TILE_L_PARAM = {
    "name": "L",
    "in": "path",
    "required": True,
    "description": "tile level",
    "schema": {"type": "integer", "minimum": 0, "maximum": 63},
}

# --- OpenAPI response declarations ---------------------------------------------------

_ERROR_TEXT = {
    400: "malformed request: bad JSON, content type or parameter, a tree size beyond the log",
    401: "no or bad credentials",
    403: "the principal lacks the role",
    404: "no such entry, event, block or tile",
    409: "the (source, id) holds another event",
    413: "request body or event too large",
    422: "the event breaks the schema, or the idempotency key was used with another body",
    503: "no leader or no node reachable; retry after the Retry-After header's seconds",
}
_READ_ERRORS = (400, 401, 403, 503)


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    problem = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        entry: dict[str, Any] = {"description": _ERROR_TEXT[status], "content": problem}
        if status == 503:
            entry["headers"] = {
                "Retry-After": {"description": "seconds", "schema": {"type": "integer"}}
            }
        out[status] = entry
    return out


def _ok(media_type: str, description: str, schema: dict[str, Any]) -> dict[int | str, Any]:
    return {200: {"description": description, "content": {media_type: {"schema": schema}}}}


def _json(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status_code=status, media_type=JSON, headers=headers)


def _credentials(request: Request) -> str | None:
    """The caller's Authorization header, forwarded to the node (which decides on it) and
    never logged. gRPC metadata admits printable ASCII only, so anything else is refused
    here as a malformed credential."""
    value = request.headers.get("authorization")
    if value is not None and not (value.isascii() and value.isprintable()):
        raise ProblemError(
            Problem(401, "Unauthorized", "the Authorization header must be printable ASCII")
        )
    return value


def _content_type_ok(request: Request, allowed: frozenset[str]) -> None:
    raw = request.headers.get("content-type")
    if raw is None:
        raise bad_request("Content-Type must be application/json", "Unsupported media type")
    media, _, rest = raw.partition(";")
    if media.strip().lower() not in allowed:
        raise bad_request(
            f"Content-Type {media.strip()!r} is not accepted; send application/json",
            "Unsupported media type",
        )
    for param in rest.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in (
            "utf-8",
            "utf8",
        ):
            raise bad_request("JSON bodies must be UTF-8", "Unsupported media type")


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ProblemError(
            Problem(413, "Payload too large", f"request body is larger than {limit} bytes")
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ProblemError(
                Problem(413, "Payload too large", f"request body is larger than {limit} bytes")
            )
        chunks.append(chunk)
    return b"".join(chunks)


LocalAnswer = Callable[[], Awaitable[Any | None]]


async def _no_local_answer() -> None:
    return None


class _Gateway:
    """Per-app state: created with the app, its node pool opened by the lifespan."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.metrics = Metrics()
        self.cache = ResponseCache(config.cache_entries, config.cache_ttl_s)
        self._pool: NodePool | None = None
        # Proofs from the nodes' hash tiles (None: every proof is asked of a node).
        self.proofs: LocalProofs | None = None

    @property
    def pool(self) -> NodePool:
        if self._pool is None:
            raise ProblemError(Problem(503, "Service unavailable", "gateway is starting"))
        return self._pool

    @asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        self._pool = NodePool(
            self.config.nodes,
            tls=self.config.tls,
            read_timeout=self.config.rpc_timeout_s,
            write_timeout=self.config.write_timeout_s,
        )
        poll: asyncio.Task[None] | None = None
        if self.config.local_proofs:
            self.proofs = LocalProofs(
                NodeTiles(self._pool),
                poll_interval_s=self.config.checkpoint_poll_s,
                max_tiles=self.config.tile_cache_tiles,
                # The node's tree was replaced: cached answers may be of the old one.
                on_reset=self.cache.clear,
                on_fetch=self.metrics.tile_fetches.inc,
            )
            poll = asyncio.ensure_future(self.proofs.run())
        try:
            yield
        finally:
            if poll is not None:
                poll.cancel()
                await asyncio.gather(poll, return_exceptions=True)
            self.proofs = None
            pool, self._pool = self._pool, None
            await pool.close()

    async def cached_read(
        self,
        request: Request,
        key: tuple[Any, ...],
        method: str,
        message: Any,
        render: Callable[[Any], bytes],
        local: LocalAnswer | None = None,
    ) -> Response:
        """A read whose answer never changes, served from the cache when it can be; a
        proof (`local` given) is computed here when it can be (see `read_proof`)."""
        auth = _credentials(request)
        full_key = (credential_key(auth), *key)
        body = self.cache.get(full_key)
        if body is None:
            self.metrics.cache_miss.inc()
            if local is None:
                answer = await self.pool.read(method, message, auth)
            else:
                answer = await self.read_proof(method, message, auth, local)
            body = render(answer)
            self.cache.put(full_key, body)
        else:
            self.metrics.cache_hit.inc()
        return _json(body)

    async def read_proof(
        self, method: str, message: Any, auth: str | None, local: LocalAnswer
    ) -> Any:
        """A proof from the tiles when `local` computes one, else from a node. The tiles
        serve only callers without credentials, and only while the node leaves reads
        public (`LocalProofs` checks): anyone else is authorized by the node itself."""
        answer = None
        if auth is None:
            try:
                answer = await local()
            except Exception as exc:  # computing here is an optimization: never a failure
                log.error("proof from tiles failed: %s: %s; asking a node", type(exc).__name__, exc)
        if answer is None:
            self.metrics.proofs_from_node.inc()
            return await self.pool.read(method, message, auth)
        self.metrics.proofs_from_tiles.inc()
        return answer


def create_app(config: GatewayConfig) -> FastAPI:
    """The gateway's ASGI app for one configuration."""
    gw = _Gateway(config)
    app = FastAPI(
        title="provledger gateway",
        version="1",
        summary="REST front end of a provledger verifiable ledger (SPEC §3)",
        lifespan=gw.lifespan,
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    _install_error_handlers(app)
    _install_log_routes(app, gw)
    _install_write_routes(app, gw)
    _install_read_routes(app, gw)
    _install_tile_routes(app, gw)
    _install_ops_routes(app, gw)
    _install_openapi(app)
    app.state.gateway = gw
    return app


# --- errors --------------------------------------------------------------------------


def _install_error_handlers(app: FastAPI) -> None:
    async def on_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ProblemError)
        return problem_response(exc.problem)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        status = exc.status_code if 400 <= exc.status_code <= 599 else 500
        title = {404: "Not found", 405: "Method not allowed"}.get(status, "Error")
        detail = exc.detail if isinstance(exc.detail, str) else title
        if status == 404:
            detail = f"no such resource: {request.url.path}"
        response = problem_response(Problem(status, title, detail))
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        if status == 405:
            # Starlette names only the first route that matched the path; several routes
            # share a path here (GET and POST /v1/events), so list them all.
            response.headers["Allow"] = ", ".join(_allowed_methods(request))
        return response

    def _allowed_methods(request: Request) -> list[str]:
        methods: set[str] = set()
        for route in request.app.router.routes:
            path = request.url.path
            if isinstance(route, Route) and route.methods and route.path_regex.match(path):
                methods |= route.methods
        return sorted(methods)

    async def on_validation(request: Request, exc: Exception) -> Response:
        # Routes parse their own parameters; this only guards against a declared one.
        return problem_response(Problem(400, "Bad request", "malformed request"))

    app.add_exception_handler(ProblemError, on_problem)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_middleware(_LastResort)


class _LastResort:
    """Turns an unexpected exception into a 500 problem, logged in one line (the traceback
    only at debug level), instead of Starlette's re-raise and uvicorn's traceback."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            log.error(
                "unexpected error on %s %s: %s: %s",
                scope.get("method"),
                scope.get("path"),
                type(exc).__name__,
                exc,
            )
            log.debug("traceback", exc_info=exc)
            if started:
                return  # the status line is out; ending the response is all that is left
            response = problem_response(
                Problem(500, "Internal error", "the gateway failed unexpectedly; this is a bug")
            )
            await response(scope, receive, send)


# --- checkpoint and log info -----------------------------------------------------------


def _install_log_routes(app: FastAPI, gw: _Gateway) -> None:
    @app.get(
        "/v1/checkpoint",
        operation_id="get_checkpoint",
        summary="The latest signed checkpoint (C2SP tlog-checkpoint signed note)",
        response_class=Response,
        responses={
            **_ok("text/plain", "the signed checkpoint note", {"type": "string"}),
            **_errors(*_READ_ERRORS),
        },
        tags=["log"],
    )
    async def checkpoint(request: Request) -> Response:
        cp: pb.Checkpoint = await gw.pool.read(
            "GetCheckpoint", pb.GetCheckpointRequest(), _credentials(request)
        )
        gw.metrics.saw_tree_size(cp.tree_size)
        if gw.proofs is not None:
            gw.proofs.observe(TreeHead.from_checkpoint(cp))
        return Response(
            cp.note.encode(),
            media_type="text/plain; charset=utf-8",
            # C2SP: the checkpoint is mutable; no cache may keep it beyond a few seconds.
            headers={"Cache-Control": "no-cache"},
        )

    @app.get(
        "/v1/log",
        operation_id="get_log",
        summary="The log's identity, keys and latest state",
        response_model=models.LogInfo,
        responses=_errors(*_READ_ERRORS),
        tags=["log"],
    )
    async def log_info(request: Request) -> Response:
        info: pb.LogInfo = await gw.pool.read(
            "GetLogInfo", pb.GetLogInfoRequest(), _credentials(request)
        )
        gw.metrics.saw_tree_size(info.tree_size)
        if gw.proofs is not None:
            gw.proofs.observe(
                TreeHead(info.origin, info.tree_size, info.root_hash, info.checkpoint)
            )
        return _json(encode.dumps(encode.log_info(info)))


# --- appends ---------------------------------------------------------------------------

EXAMPLE_EVENT: dict[str, Any] = {
    "specversion": "1.0",
    "id": "0190a5c4-7d1e-7b3a-9f00-4c2d1e000001",
    "source": "urn:app:mobile-backend:eu-1",
    "type": "provledger.inference.v1",
    "time": "2025-03-04T10:15:02Z",
    "subject": "model:fraud@sha256:" + "ab" * 32,
    "data": {
        "model": {"name": "fraud", "version": "3.1.0"},
        "input_commitment": "1f" * 32,
        "output_commitment": "2e" * 32,
        "count": 1,
    },
}

# OpenAPI links from a receipt to the reads it enables (schemathesis follows them).
_RECEIPT_LINKS = {
    "entry": {"operationId": "get_entry", "parameters": {"index": "$response.body#/index"}},
    "inclusion": {
        "operationId": "get_inclusion_proof",
        "parameters": {"index": "$response.body#/index", "tree_size": "$response.body#/tree_size"},
    },
    "block": {"operationId": "get_block", "parameters": {"height": "$response.body#/block_height"}},
}

_EVENT_TYPES_IN = frozenset({"application/json", "application/cloudevents+json"})
_BATCH_TYPES_IN = frozenset({"application/json"})


def _install_write_routes(app: FastAPI, gw: _Gateway) -> None:
    @app.post(
        "/v1/events",
        operation_id="append_event",
        summary="Append one event; answers once its block is committed",
        status_code=201,
        response_model=models.Receipt,
        responses={
            200: {
                "model": models.Receipt,
                "description": "an idempotent retry (SPEC §1)",
                "links": _RECEIPT_LINKS,
            },
            201: {"description": "appended and committed", "links": _RECEIPT_LINKS},
            **_errors(400, 401, 403, 409, 413, 422, 503),
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": "#/components/schemas/Event"},
                        "example": EXAMPLE_EVENT,
                    }
                },
            }
        },
        tags=["events"],
    )
    async def append_event(request: Request) -> Response:
        _content_type_ok(request, _EVENT_TYPES_IN)
        body = await _read_body(request, gw.config.max_event_bytes)
        # The node parses and validates the event (400 malformed, 422 invalid); decoding
        # it here as well would only double the cost of the common case.
        started = time.perf_counter()
        try:
            receipt: pb.Receipt = await gw.pool.write(
                "Append", pb.AppendRequest(event=body), _credentials(request)
            )
        except ProblemError:
            gw.metrics.refused.inc()
            raise
        gw.metrics.commit_single.observe(time.perf_counter() - started)
        (gw.metrics.duplicate if receipt.duplicate else gw.metrics.accepted).inc()
        gw.metrics.saw_tree_size(receipt.tree_size)
        if gw.proofs is not None:
            # Proofs at the latest checkpoint cover this append from now on.
            gw.proofs.observe_receipt(receipt.checkpoint, receipt.tree_size)
        return _json(receipt_json(receipt).encode(), 200 if receipt.duplicate else 201)

    @app.post(
        "/v1/events:batch",
        operation_id="append_batch",
        summary="Append 1 to 10,000 events; each succeeds or fails on its own",
        response_model=models.BatchResult,
        responses=_errors(400, 401, 403, 413, 422, 503),
        openapi_extra={
            "parameters": [
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "description": "the same key with an equal body returns the first answer",
                    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY},
                }
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": "#/components/schemas/BatchRequest"},
                        "example": {"events": [EXAMPLE_EVENT]},
                    }
                },
            },
        },
        tags=["events"],
    )
    async def append_batch(request: Request) -> Response:
        _content_type_ok(request, _BATCH_TYPES_IN)
        key = request.headers.get("idempotency-key")
        if key is not None and not (
            0 < len(key) <= MAX_IDEMPOTENCY_KEY and key.isascii() and key.isprintable()
        ):
            raise bad_request(
                f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters"
            )
        body = await _read_body(request, gw.config.max_batch_bytes)
        events = split_batch(body)
        digest = request_digest(body, events) if key is not None else b""
        started = time.perf_counter()
        response: pb.AppendBatchResponse = await gw.pool.write(
            "AppendBatch",
            pb.AppendBatchRequest(events=events, idempotency_key=key or "", request_digest=digest),
            _credentials(request),
        )
        gw.metrics.commit_batch.observe(time.perf_counter() - started)
        if len(response.results) != len(events):
            raise RuntimeError(
                f"node answered {len(response.results)} results for {len(events)} events"
            )
        outcome = encode_batch_result(response)
        gw.metrics.accepted.inc(outcome.accepted)
        gw.metrics.duplicate.inc(outcome.duplicates)
        gw.metrics.refused.inc(outcome.refused)
        gw.metrics.saw_tree_size(outcome.largest_tree)
        if gw.proofs is not None and outcome.largest_checkpoint:
            gw.proofs.observe_receipt(outcome.largest_checkpoint, outcome.largest_tree)
        return _json(outcome.body)


# --- entries, events, proofs, blocks, export ------------------------------------------


def _install_read_routes(app: FastAPI, gw: _Gateway) -> None:
    @app.get(
        "/v1/entries/{index}",
        operation_id="get_entry",
        summary="One entry by its leaf index",
        response_model=models.Entry,
        responses=_errors(400, 401, 403, 404, 503),
        openapi_extra=openapi_parameters(P_INDEX),
        tags=["entries"],
    )
    async def get_entry(request: Request) -> Response:
        index = P_INDEX.require(request.path_params)
        return await gw.cached_read(
            request,
            ("entry", index),
            "GetEntry",
            pb.GetEntryRequest(index=index),
            lambda e: encode.dumps(encode.entry(e)),
        )

    @app.get(
        "/v1/events",
        operation_id="find_events",
        summary="Look one event up by (source, id), or list events by type and subject",
        response_model=models.Entry | models.EntryPage,
        responses=_errors(400, 401, 403, 404, 503),
        openapi_extra=openapi_parameters(P_SOURCE, P_ID, P_TYPE, P_SUBJECT, P_AFTER, P_LIMIT),
        tags=["entries"],
    )
    async def events(request: Request) -> Response:
        q = request.query_params
        source, event_id = P_SOURCE.parse(q), P_ID.parse(q)
        if source is not None or event_id is not None:
            if source is None or event_id is None:
                raise bad_request("source and id go together")
            if any(n in q for n in ("type", "subject", "after", "limit")):
                raise bad_request(
                    "source and id cannot be combined with type, subject, after or limit"
                )
            return await gw.cached_read(
                request,
                ("event", source, event_id),
                "LookupEvent",
                pb.LookupEventRequest(source=source, id=event_id),
                lambda e: encode.dumps(encode.entry(e)),
            )
        message = pb.QueryEventsRequest(
            type=P_TYPE.parse(q) or "", subject=P_SUBJECT.parse(q) or "", limit=P_LIMIT.require(q)
        )
        after = P_AFTER.parse(q)
        if after is not None:
            message.after = after
        page: pb.QueryEventsResponse = await gw.pool.read(
            "QueryEvents", message, _credentials(request)
        )
        next_after = page.next_after if page.HasField("next_after") else None
        body = {"entries": [encode.entry(e) for e in page.entries], "next_after": next_after}
        return _json(encode.dumps(body))

    @app.get(
        "/v1/proof/inclusion",
        operation_id="get_inclusion_proof",
        summary="RFC 9162 inclusion proof of one entry",
        response_model=models.InclusionProof,
        responses=_errors(400, 401, 403, 404, 503),
        openapi_extra=openapi_parameters(P_PROOF_INDEX, P_LEAF_HASH, P_TREE_SIZE),
        tags=["proofs"],
    )
    async def inclusion(request: Request) -> Response:
        q = request.query_params
        index, leaf_hash, size = P_PROOF_INDEX.parse(q), P_LEAF_HASH.parse(q), P_TREE_SIZE.parse(q)
        if index is not None and leaf_hash is None:
            message = pb.InclusionProofRequest(index=index)
        elif leaf_hash is not None and index is None:
            message = pb.InclusionProofRequest(leaf_hash=leaf_hash)
        else:
            raise bad_request("give exactly one of index and leaf_hash")
        gw.metrics.inclusion_proofs.inc()
        proofs = gw.proofs

        async def from_tiles() -> encode.InclusionLike | None:
            # By leaf hash needs the node's index of leaf hashes: the node's to answer.
            if proofs is None or index is None:
                return None
            return await proofs.inclusion(index, size)

        if size is None:
            # Against the latest checkpoint: changes with every block, so never cached.
            proof: encode.InclusionLike = await gw.read_proof(
                "GetInclusionProof", message, _credentials(request), from_tiles
            )
            gw.metrics.saw_tree_size(proof.tree_size)
            return _json(encode.inclusion_proof(proof))
        message.tree_size = size
        key = ("inclusion", index, leaf_hash, size)
        return await gw.cached_read(
            request, key, "GetInclusionProof", message, encode.inclusion_proof, from_tiles
        )

    @app.get(
        "/v1/proof/consistency",
        operation_id="get_consistency_proof",
        summary="RFC 9162 consistency proof between two tree sizes",
        response_model=models.ConsistencyProof,
        responses=_errors(400, 401, 403, 503),
        openapi_extra=openapi_parameters(P_FIRST, P_SECOND),
        tags=["proofs"],
    )
    async def consistency(request: Request) -> Response:
        q = request.query_params
        first, second = P_FIRST.require(q), P_SECOND.require(q)
        if first > second:
            raise bad_request(f"first ({first}) must not be greater than second ({second})")
        gw.metrics.consistency_proofs.inc()
        proofs = gw.proofs
        return await gw.cached_read(
            request,
            ("consistency", first, second),
            "GetConsistencyProof",
            pb.ConsistencyProofRequest(first=first, second=second),
            encode.consistency_proof,
            (lambda: proofs.consistency(first, second)) if proofs is not None else _no_local_answer,
        )

    @app.get(
        "/v1/blocks/{height}",
        operation_id="get_block",
        summary="One block: header, hash, signatures and entry indexes",
        response_model=models.Block,
        responses=_errors(400, 401, 403, 404, 503),
        openapi_extra=openapi_parameters(P_HEIGHT),
        tags=["blocks"],
    )
    async def get_block(request: Request) -> Response:
        height = P_HEIGHT.require(request.path_params)
        return await gw.cached_read(
            request,
            ("block", height),
            "GetBlock",
            pb.GetBlockRequest(height=height),
            lambda b: encode.dumps(encode.block_detail(b)),
        )

    @app.get(
        "/v1/blocks",
        operation_id="list_blocks",
        summary="Blocks in height order",
        response_model=models.BlockList,
        responses=_errors(*_READ_ERRORS),
        openapi_extra=openapi_parameters(P_FROM, P_BLOCK_LIMIT),
        tags=["blocks"],
    )
    async def list_blocks(request: Request) -> Response:
        q = request.query_params
        message = pb.ListBlocksRequest(
            from_height=P_FROM.require(q), limit=P_BLOCK_LIMIT.require(q)
        )
        listed: pb.ListBlocksResponse = await gw.pool.read(
            "ListBlocks", message, _credentials(request)
        )
        body = {"blocks": [encode.block_summary(b) for b in listed.blocks]}
        return _json(encode.dumps(body))

    @app.get(
        "/v1/export",
        operation_id="export",
        summary="Audit export: NDJSON frontier, blocks with leaves, final checkpoint",
        response_class=StreamingResponse,
        responses={
            **_ok(
                "application/x-ndjson",
                "one JSON object per line: an optional frontier, one per block, a checkpoint",
                {"type": "string"},
            ),
            **_errors(400, 401, 403, 404, 503),
        },
        openapi_extra=openapi_parameters(P_FROM, P_TO),
        tags=["blocks"],
    )
    async def export(request: Request) -> Response:
        q = request.query_params
        start, end = P_FROM.require(q), P_TO.parse(q)
        if end is not None and start > end:
            raise bad_request(f"from ({start}) must not be greater than to ({end})")
        message = pb.ExportRequest(from_height=start)
        if end is not None:
            message.to_height = end
        items = await gw.pool.read_stream("Export", message, _credentials(request))
        return StreamingResponse(_export_lines(items), media_type="application/x-ndjson")


async def _export_lines(items: AsyncIterator[Any]) -> AsyncIterator[bytes]:
    try:
        async for item in items:
            yield encode.export_line(item)
    except ProblemError as exc:
        # The status line is gone already. Ending without the final checkpoint line is
        # what tells the reader (and `provledger audit`) that the export is incomplete.
        log.warning("export stream ended early: %s", exc.problem.detail)


# --- C2SP tiles --------------------------------------------------------------------------


def _install_tile_routes(app: FastAPI, gw: _Gateway) -> None:
    tile_ok = _ok(
        "application/octet-stream", "the tile's bytes", {"type": "string", "format": "binary"}
    )
    tile_ok[200]["headers"] = {"Cache-Control": {"schema": {"type": "string"}}}

    async def serve(request: Request, level: int, n_path: str, entries: bool) -> Response:
        try:
            tile = parse_tile_index(n_path)
        except TilePathError as exc:
            raise bad_request(str(exc), "Malformed tile path") from None
        key = ("tile", entries, level, tile.index, tile.width)
        auth = _credentials(request)
        full_key = (credential_key(auth), *key)
        data = gw.cache.get(full_key)
        (gw.metrics.cache_miss if data is None else gw.metrics.cache_hit).inc()
        if data is None:
            message = pb.GetTileRequest(
                level=level, index=tile.index, width=0 if tile.full else tile.width, entries=entries
            )
            answer: pb.Tile = await gw.pool.read("GetTile", message, auth)
            data = answer.data
            gw.cache.put(full_key, data)
        # Tiles are immutable (C2SP tlog-tiles): a partial tile of width W never changes
        # either; only which width is the latest does, and that comes from a checkpoint.
        return Response(
            data, media_type="application/octet-stream", headers={"Cache-Control": IMMUTABLE}
        )

    @app.get(
        "/v1/tile/entries/{N:path}",
        operation_id="get_entry_bundle",
        summary="C2SP tlog-tiles entry bundle",
        response_class=Response,
        responses={**tile_ok, **_errors(400, 401, 403, 404, 503)},
        openapi_extra={"parameters": [_TILE_N_PARAM]},
        tags=["tiles"],
    )
    async def entry_bundle(request: Request) -> Response:
        return await serve(request, 0, request.path_params["N"], entries=True)

    @app.get(
        "/v1/tile/{L}/{N:path}",
        operation_id="get_tile",
        summary="C2SP tlog-tiles Merkle tree tile",
        response_class=Response,
        responses={**tile_ok, **_errors(400, 401, 403, 404, 503)},
        openapi_extra={"parameters": [_TILE_L_PARAM, _TILE_N_PARAM]},
        tags=["tiles"],
    )
    async def hash_tile(request: Request) -> Response:
        try:
            level = parse_tile_level(request.path_params["L"])
        except TilePathError as exc:
            raise bad_request(str(exc), "Malformed tile path") from None
        return await serve(request, level, request.path_params["N"], entries=False)


# --- health, readiness, metrics, OpenAPI -----------------------------------------------


def _install_ops_routes(app: FastAPI, gw: _Gateway) -> None:
    @app.get(
        "/healthz",
        operation_id="healthz",
        summary="Liveness: the gateway process answers",
        response_model=models.Health,
        tags=["operations"],
    )
    async def healthz() -> Response:
        return _json(b'{"status":"ok"}')

    @app.get(
        "/readyz",
        operation_id="readyz",
        summary="Readiness: a leader is known and reachable",
        response_model=models.Readiness,
        responses=_errors(503),
        tags=["operations"],
    )
    async def readyz() -> Response:
        try:
            leader = await asyncio.wait_for(gw.pool.find_leader(refresh=True), timeout=5.0)
        except TimeoutError:
            raise ProblemError(
                Problem(503, "Service unavailable", "no node answered in time", retry_after=1)
            ) from None
        return _json(encode.dumps({"status": "ready", "leader": leader}))

    @app.get(
        "/metrics",
        operation_id="metrics",
        summary="Prometheus metrics",
        response_class=Response,
        responses=_ok("text/plain", "Prometheus text exposition format", {"type": "string"}),
        tags=["operations"],
    )
    async def metrics() -> Response:
        return Response(gw.metrics.render(), media_type=METRICS_CONTENT_TYPE)


def _install_openapi(app: FastAPI) -> None:
    extra_models: tuple[type[BaseModel], ...] = (
        models.Problem,
        models.Event,
        models.BatchRequest,
    )

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            description="Every error is application/problem+json (RFC 9457). Hashes are "
            "lowercase hex; leaves are base64. See SPEC §3.",
            routes=app.routes,
        )
        components = schema.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        for model in extra_models:
            definition = model.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, sub in definition.pop("$defs", {}).items():
                schemas.setdefault(name, sub)
            schemas.setdefault(model.__name__, definition)
        components["securitySchemes"] = {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "a token the nodes map to a principal; reads may be public",
            }
        }
        schema["security"] = [{}, {"bearer": []}]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
