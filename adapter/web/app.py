"""The ASGI application: the webhook routes, ``/healthz``, ``/readyz`` and ``/metrics``.

The webhook logic stays in ``adapter.intake.webhook.Receiver`` (plain bytes in, a ``Reply`` out,
testable without sockets); this module only moves bytes: it reads the body under a size limit
that holds for chunked bodies too and under a time limit (a slow client gets 408), hands it to
the receiver in a worker thread (queueing is blocking I/O), and writes the reply. Every answer
an error is an OperationOutcome (405 for methods other than POST/PUT, 404 for other paths, 500
for an error of the adapter's own, logged through the JSON log with its type only).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from adapter.intake.webhook import Receiver, Reply, outcome
from adapter.observe import correlated

log = logging.getLogger(__name__)
FHIR_JSON = "application/fhir+json"
WEBHOOK_METHODS = ["POST", "PUT"]


class Ops(Protocol):
    """What the ops routes ask of the running service."""

    def live(self) -> tuple[bool, dict[str, str]]: ...

    def ready(self) -> tuple[bool, dict[str, str]]: ...

    def metrics(self) -> tuple[bytes, str]: ...


class CdsAnswer(Protocol):
    @property
    def status(self) -> int: ...

    @property
    def body(self) -> dict[str, Any]: ...


class Cds(Protocol):
    """The CDS Hooks services (``adapter.cds``): discovery, a hook call, feedback."""

    def discovery(self) -> CdsAnswer: ...

    def call(self, service_id: str, body: bytes, authorization: str | None) -> CdsAnswer: ...

    def feedback(self, service_id: str, body: bytes, authorization: str | None) -> CdsAnswer: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """How much a request may cost: body bytes, and seconds to send the body."""

    max_body: int = 5_000_000
    body_timeout: float = 10.0


class _BodyTooLarge(Exception):
    pass


def fhir_response(reply: Reply) -> Response:
    if reply.body is None:
        return Response(status_code=reply.status)
    return Response(orjson.dumps(reply.body), status_code=reply.status, media_type=FHIR_JSON)


async def read_body(request: Request, limits: Limits) -> bytes:
    """The request body, at most ``limits.max_body`` bytes whatever the framing (a declared
    length is refused at once; a chunked body is counted as it arrives)."""
    declared = request.headers.get("content-length")
    if (
        declared is not None
        and declared.isascii()
        and declared.isdigit()
        and int(declared) > limits.max_body
    ):
        raise _BodyTooLarge
    size = 0
    chunks: list[bytes] = []
    with anyio.fail_after(limits.body_timeout):
        async for chunk in request.stream():
            size += len(chunk)
            if size > limits.max_body:
                raise _BodyTooLarge
            chunks.append(chunk)
    return b"".join(chunks)


def _closing(response: Response) -> Response:
    """A response after which the connection is closed (the rest of the body is not read)."""
    response.headers["connection"] = "close"
    return response


def webhook_endpoint(
    receiver: Receiver, limits: Limits
) -> Callable[[Request], Awaitable[Response]]:
    async def deliver(request: Request) -> Response:
        with correlated():
            path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            headers = list(request.headers.items())
            names = {k for k, _ in headers}
            if "content-length" in names and "transfer-encoding" in names:
                # two framings (a request-smuggling shape): refused, the connection closed
                return _closing(fhir_response(outcome(400, "invalid", "two body framings")))
            refused = receiver.precheck(request.method, path, headers)
            if refused is not None:  # refused on its head: the body is never read
                return _closing(fhir_response(refused))
            try:
                body = await read_body(request, limits)
            except _BodyTooLarge:
                return _closing(
                    fhir_response(outcome(413, "too-costly", f"body over {limits.max_body} bytes"))
                )
            except TimeoutError:
                return fhir_response(outcome(408, "timeout", "the body was not sent in time"))
            except ClientDisconnect:
                return Response(status_code=400)
            try:
                reply = await run_in_threadpool(
                    receiver.handle, request.method, path, headers, body
                )
            except Exception as err:  # the sender retries; the item was not queued
                log.error("webhook failed to queue a delivery: %s", type(err).__name__)
                reply = outcome(503, "transient", "could not queue; retry")
            return fhir_response(reply)

    return deliver


def ops_routes(ops: Ops) -> list[Route]:
    async def healthz(request: Request) -> Response:
        ok, checks = await run_in_threadpool(ops.live)
        return JSONResponse({"live": ok, **checks}, status_code=200 if ok else 503)

    async def readyz(request: Request) -> Response:
        ok, checks = await run_in_threadpool(ops.ready)
        return JSONResponse({"ready": ok, **checks}, status_code=200 if ok else 503)

    async def metrics(request: Request) -> Response:
        body, content_type = await run_in_threadpool(ops.metrics)
        return Response(body, media_type=content_type)

    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]


def cds_routes(cds: Cds, limits: Limits) -> list[Route]:
    """``GET /cds-services``, ``POST /cds-services/{id}`` and ``…/{id}/feedback`` (JSON)."""

    def answer(a: CdsAnswer) -> Response:
        return Response(orjson.dumps(a.body), status_code=a.status, media_type="application/json")

    async def discovery(request: Request) -> Response:
        return answer(cds.discovery())

    def post(handler: Callable[[str, bytes, str | None], CdsAnswer]) -> Any:
        async def endpoint(request: Request) -> Response:
            try:
                body = await read_body(request, limits)
            except _BodyTooLarge:
                return Response(b'{"error": "body too large"}', status_code=413)
            except (TimeoutError, ClientDisconnect):
                return Response(b'{"error": "body too slow"}', status_code=408)
            auth = request.headers.get("authorization")
            sid = str(request.path_params["service_id"])
            return answer(await run_in_threadpool(handler, sid, body, auth))

        return endpoint

    call, feedback = post(cds.call), post(cds.feedback)

    return [
        Route("/cds-services", discovery, methods=["GET"]),
        Route("/cds-services/{service_id}", call, methods=["POST"]),
        Route("/cds-services/{service_id}/feedback", feedback, methods=["POST"]),
    ]


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 405:
        return fhir_response(outcome(405, "not-supported", "method not allowed here"))
    if status == 404:
        return fhir_response(outcome(404, "not-found", "unknown path"))
    return fhir_response(outcome(status, "exception", "request failed"))


async def _server_error(request: Request, exc: Exception) -> Response:
    log.error("request failed: %s", type(exc).__name__)
    return fhir_response(outcome(500, "exception", "internal error"))


def create_app(
    receiver: Receiver, *, ops: Ops | None = None, limits: Limits | None = None,
    cds: Cds | None = None, mounts: Sequence[tuple[str, Any]] = (),
) -> Any:  # fmt: skip
    """The application: the webhook on ``receiver.path`` (and below it), the ops routes, the
    CDS Hooks services, and ASGI applications mounted at their paths (the workbench at
    ``/review``)."""
    limits = limits or Limits(max_body=receiver.max_body)
    deliver = webhook_endpoint(receiver, limits)
    routes = [
        Route(receiver.path, deliver, methods=WEBHOOK_METHODS),
        Route(receiver.path + "/{rest:path}", deliver, methods=WEBHOOK_METHODS),
        *(ops_routes(ops) if ops is not None else []),
        *(cds_routes(cds, limits) if cds is not None else []),
        *(Mount(path, app=app) for path, app in mounts),
    ]
    return Starlette(
        routes=routes,
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
    )
