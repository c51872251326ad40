"""create_app(): routers, error handlers, logging that never carries a secret."""

import base64
import contextlib
import functools
import hashlib
import ipaddress
import logging
import re
import time
import traceback
from collections.abc import AsyncIterator, Iterable
from typing import Any, ClassVar
from urllib.parse import urlsplit

import anyio
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import errors, health, limits, logs, outbox, routes, schedule, signing
from app.config import get_settings
from app.db import database_turn, get_engine, session_scope
from app.routes import (
    STATIC,
    auth,
    ballots,
    console,
    console_disputes,
    console_review,
    console_roll,
    console_running,
    disputes,
    evidence,
    national_list,
    papers,
    public,
    roll_corrections,
    scrutiny,
    templates,
    vote_api,
    vote_pages,
)
from app.routes import health as health_routes

log = logging.getLogger("mandate.access")
error_log = logging.getLogger("mandate.error")

# Anything after /vote/ is a voting token: it never reaches a log line.
_TOKEN_IN_PATH = re.compile(r"/vote/[^/?#]+")
# The path arrives percent-decoded: a %0A in it must not start a forged log line.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def redact(path: str) -> str:
    path = _TOKEN_IN_PATH.sub("/vote/[link]", path)
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", path)


def _wants_html(request: Request) -> bool:
    return request.url.path.startswith(("/vote/", "/ballots/", "/papers/", "/console"))


def _error_response(request: Request, exc: errors.AppError) -> Response:
    busy = isinstance(exc, ServerBusy | DatabaseUnavailable)
    headers = exc.headers or ({"Retry-After": "1"} if busy else None)
    if isinstance(exc, errors.NotAuthenticated) and request.url.path.startswith("/console"):
        # A console page without a session (or after it ended) goes to the sign-in page.
        return RedirectResponse("/console/sign-in", status_code=303)
    if _wants_html(request):
        return templates.TemplateResponse(
            request,
            "error.html",
            {"title": exc.detail.split(".")[0], "detail": exc.detail, "error": exc.name},
            status_code=exc.status_code,
            headers=headers,
        )
    return JSONResponse(exc.body(), status_code=exc.status_code, headers=headers)


class ServerBusy(errors.Conflict):
    pass


class HttpError(errors.AppError):
    _WORDS: ClassVar[dict[int, str]] = {
        400: "The request could not be read: send valid UTF-8 JSON, a form or a CSV file.",
        404: "There is nothing at this address; check it, or start from your voting link.",
        405: "This address does not accept that kind of request.",
    }

    def __init__(self, status_code: int) -> None:
        super().__init__(self._WORDS.get(status_code, "The request was refused."))
        self.status_code = status_code


class DatabaseUnavailable(errors.AppError):
    status_code = 503


def _is_contention(exc: DBAPIError) -> bool:
    """A lock timeout or serialisation failure: the request changed nothing and may be retried."""
    text = str(exc.orig).lower()
    code = getattr(exc.orig, "sqlstate", None)
    return "database is locked" in text or code in {"40001", "40P01", "55P03"}


class InternalError(errors.AppError):
    """A failure nobody foresaw: the answer names only a reference to find it in the log."""

    status_code = 500

    def __init__(self, reference: str) -> None:
        super().__init__(f"Something went wrong; quote this reference: {reference}.")
        self.reference = reference

    def body(self) -> dict[str, Any]:
        return {**super().body(), "request_id": self.reference}


class ContentTooLarge(errors.AppError):
    status_code = 413


def _in_mib(size: int) -> str:
    return f"{size / (1024 * 1024):g} MiB" if size >= 1024 * 1024 else f"{size} bytes"


_LOCKED = "frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"


def _hashes(sources: Iterable[str]) -> str:
    return " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'"
        for s in sources
    )


# Stylesheets, scripts, images and fonts from /static/ only: no inline script or style runs, so
# an injected one could neither act for the voter nor read a form's hidden fields.
PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; font-src 'self'; "
    + _LOCKED
)


_CDN = "https://cdn.jsdelivr.net"


def docs_policy(page: str) -> str:
    """Swagger UI's page: its script and stylesheet from the CDN, its one inline script by hash,
    and inline styles (which its widgets set)."""
    scripts = re.findall(r"<script>(.*?)</script>", page, re.DOTALL)
    return (
        f"default-src 'self'; script-src {_CDN} {_hashes(scripts)}; "
        f"style-src {_CDN} 'unsafe-inline'; img-src 'self' data: https://fastapi.tiangolo.com; "
        f"{_LOCKED}"
    )


_IP = ipaddress.IPv4Address | ipaddress.IPv6Address
_Networks = list[ipaddress.IPv4Network | ipaddress.IPv6Network]


def trusted_networks(setting: str) -> _Networks:
    """TRUSTED_PROXIES as networks; a malformed entry stops the start."""
    networks: _Networks = []
    for entry in filter(None, (e.strip() for e in setting.split(","))):
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(
                f"TRUSTED_PROXIES: {entry!r} is not an address or a CIDR range"
            ) from None
    return networks


def _is_https(scope: Scope, proxies: _Networks) -> bool:
    if scope.get("scheme") == "https":
        return True
    client = scope.get("client")
    try:
        peer: _IP | None = ipaddress.ip_address(client[0]) if client else None
    except ValueError:  # not an IP address: a Unix socket, or the test client
        peer = None
    if peer is None or not any(peer in network for network in proxies):
        return False
    # The nearest proxy's word: the last value, which a client cannot have written.
    forwarded = Headers(scope=scope).getlist("x-forwarded-proto")
    return bool(forwarded) and forwarded[-1].rsplit(",", 1)[-1].strip().lower() == "https"


class HeadersAndAccessLog:
    """A request id, the security headers on every response, an access log line with the link
    redacted, and a plain 500 naming only the request id when something unforeseen fails."""

    def __init__(
        self,
        app: ASGIApp,
        activity: outbox.Activity,
        trusted_proxies: _Networks,
        policy: str,
        docs_policy: str,
    ) -> None:
        self.app = app
        self.activity = activity
        self.trusted_proxies = trusted_proxies
        self.policy = policy
        self.docs_policy = docs_policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.activity.touch()
        started = time.perf_counter()
        path: str = scope["path"]
        request_id = logs.new_request_id(Headers(scope=scope).get("x-request-id"))
        context = logs.request_id.set(request_id)
        https = _is_https(scope, self.trusted_proxies)
        status = 500
        response_started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                headers = MutableHeaders(scope=message)
                headers["X-Request-ID"] = request_id
                # A voting link must not leak through a referrer, a cache or a search engine.
                headers["Referrer-Policy"] = "no-referrer"
                headers["X-Content-Type-Options"] = "nosniff"
                headers["X-Frame-Options"] = "DENY"
                headers["Content-Security-Policy"] = (
                    self.docs_policy if path == "/docs" else self.policy
                )
                headers["Cross-Origin-Opener-Policy"] = "same-origin"
                if https:
                    headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
                if path.startswith(("/vote/", "/api/", "/ballots/")):
                    headers["Cache-Control"] = "no-store"
                    headers["X-Robots-Tag"] = "noindex, nofollow"
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception as exc:
            # Where it failed, never the exception's text: it may quote SQL with a vote in it.
            error_log.error(
                "unhandled %s\n%s",
                type(exc).__name__,
                "".join(traceback.format_tb(exc.__traceback__)),
            )
            if response_started:
                raise
            response = _error_response(Request(scope), InternalError(request_id))
            await response(scope, receive, send_with_headers)
        finally:
            elapsed = (time.perf_counter() - started) * 1000
            shown = redact(path)
            log.info(
                "%s %s %s %.1fms", scope["method"], shown, status, elapsed,
                extra={"method": scope["method"], "path": shown, "status": status,
                       "duration_ms": round(elapsed, 1)},
            )  # fmt: skip
            logs.request_id.reset(context)


_STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# A ballot definition carries its documents, a roll can list thousands of practices, and the
# national list of GP practices is a few megabytes.
_UPLOAD = re.compile(
    r"^/api/v1/(?:ballots(?:/[^/]+(?:/roll)?)?|national-list)/?$"
    # The console's uploads: a ballot file with its documents, and a roll.
    r"|^/console/ballots/(?:new/file|\d+/roll)$"
)


def _same_site(headers: Headers, own_origin: str) -> bool:
    """Whether a state change may come from where the browser says it came from."""
    origin = headers.get("origin")
    # Under Referrer-Policy: no-referrer a browser writes `Origin: null`, even for a form on our
    # own page; then the browser's Sec-Fetch-Site (which no page can set) must say same-origin.
    # A sandboxed frame or a data: page elsewhere also writes null, but with cross-site.
    if origin == "null":
        return headers.get("sec-fetch-site") == "same-origin"
    fetched_from = headers.get("sec-fetch-site")
    if fetched_from is not None and fetched_from not in ("same-origin", "none"):
        return False
    return origin is None or origin.rstrip("/").lower() == own_origin


class RequestGuard:
    """Before the app sees a request: refuse a state change sent from another site's page
    (its Origin), and a body over the size limit, counted as it streams when undeclared."""

    def __init__(self, app: ASGIApp, origin: str, max_body: int, max_upload: int) -> None:
        self.app = app
        self.origin = origin
        self.max_body = max_body
        self.max_upload = max_upload

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _STATE_CHANGING:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if not _same_site(headers, self.origin):
            await self._refuse(
                scope,
                receive,
                send,
                errors.Forbidden(
                    "This request was sent from another site's page and was refused; nothing "
                    "was changed. Go back to your voting link or to the service's own pages."
                ),
            )
            return
        limit = self.max_upload if _UPLOAD.match(scope["path"]) else self.max_body
        too_large = ContentTooLarge(
            f"The request is larger than the {_in_mib(limit)} this address accepts; nothing was "
            "changed."
        )
        declared = headers.get("content-length")
        if declared is not None:
            if not (declared.isascii() and declared.isdigit()):
                await self._refuse(
                    scope, receive, send, errors.InvalidInput("Content-Length is not a number.")
                )
            elif int(declared) > limit:
                await self._refuse(scope, receive, send, too_large)
            else:
                await self.app(scope, receive, send)
            return
        # No declared length (a chunked body): read it here, up to the limit, and replay it.
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit:
                await self._refuse(scope, receive, send, too_large)
                return
            if not message.get("more_body", False):
                break
        body: list[Message] = [{"type": "http.request", "body": b"".join(chunks)}]

        async def replay() -> Message:
            return body.pop() if body else await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, exc: errors.AppError) -> None:
        await _error_response(Request(scope), exc)(scope, receive, send)


def base_origin(base_url: str) -> str:
    """scheme://host[:port] of BASE_URL, as a browser writes it in an Origin header."""
    parts = urlsplit(base_url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    port = f":{parts.port}" if parts.port and parts.port != default else ""
    return f"{parts.scheme}://{parts.hostname}{port}".lower()


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Check the database, load the signing key, and run the outbox sender (unless a separate
    worker does) and the schedule of transitions."""
    health.self_check(get_engine())
    # Listed from the first start, so the key in use is public before it signs anything.
    with session_scope() as session:
        signing.register(session)
    async with anyio.create_task_group() as tasks:
        if get_settings().mail_send_in_server:
            tasks.start_soon(
                functools.partial(
                    outbox.run_sender, app.state.database_turn, activity=app.state.activity
                )
            )
        if get_settings().schedule_in_server:
            tasks.start_soon(schedule.run_scheduler, app.state.database_turn)
        yield
        tasks.cancel_scope.cancel()


def create_app() -> FastAPI:
    app = FastAPI(
        lifespan=lifespan,
        title="Mandate",
        summary="Secure electronic balloting for member-practice mandates",
        version="0.1.0",
        openapi_url="/openapi.json",
        # Served below, so its page and its policy are the same bytes.
        docs_url=None,
        redoc_url=None,
    )
    generated = app.openapi
    app.openapi = functools.cache(lambda: routes.with_refusals(generated()))  # type: ignore[method-assign]
    settings = get_settings()
    app.state.database_turn = database_turn()
    app.state.database_is_sqlite = settings.database_url.startswith("sqlite")

    @app.exception_handler(errors.AppError)
    async def _app_error(request: Request, exc: errors.AppError) -> Response:
        if isinstance(exc, errors.LinkInvalid):
            # Guessing links is limited by address; a valid link never is (see limits).
            try:
                await run_in_threadpool(
                    limits.check,
                    limits.INVALID_LINKS_ADDRESS,
                    limits.address_of(request),
                    doing="open voting links from this address",
                )
            except limits.TooManyAttempts as refused:
                exc = refused
        return _error_response(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # The framework's own refusals (unknown address, wrong method, unreadable body) in the
        # same shape and words as every other error.
        return _error_response(request, HttpError(exc.status_code))

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError) -> Response:
        # FastAPI's default echoes the input, which may be a vote: report only where and what.
        problems = errors.problems_from_validation(list(exc.errors()))
        return _error_response(
            request,
            errors.InvalidInput(
                "The request was not understood: " + errors.describe_problems(problems),
                problems=problems,
            ),
        )

    @app.exception_handler(DBAPIError)
    async def _database_error(request: Request, exc: DBAPIError) -> Response:
        if _is_contention(exc):
            return _error_response(
                request,
                ServerBusy("The service was busy and nothing was recorded; please try again."),
            )
        if isinstance(exc, OperationalError | InterfaceError):
            # The database went away (restart, failover, network): never a 500 with a trace.
            log.warning("database unavailable: %s", type(exc.orig).__name__)
            return _error_response(
                request,
                DatabaseUnavailable(
                    "The service cannot reach its database just now; please try again in a "
                    "minute. If you were voting, open your link again to see whether your "
                    "practice's vote was recorded."
                ),
            )
        raise exc

    docs = get_swagger_ui_html(openapi_url="/openapi.json", title="Mandate - Swagger UI")

    @app.get("/docs", include_in_schema=False)
    async def _docs() -> HTMLResponse:
        return HTMLResponse(docs.body)

    app.state.activity = outbox.Activity()
    app.add_middleware(
        RequestGuard,
        origin=base_origin(settings.base_url),
        max_body=settings.max_body_bytes,
        max_upload=settings.max_upload_bytes,
    )
    app.add_middleware(
        HeadersAndAccessLog,
        activity=app.state.activity,
        trusted_proxies=trusted_networks(settings.trusted_proxies),
        policy=PAGE_POLICY,
        docs_policy=docs_policy(bytes(docs.body).decode()),
    )
    for module in (
        auth,
        ballots,
        national_list,
        roll_corrections,
        scrutiny,
        disputes,
        evidence,
        vote_api,
        vote_pages,
        console,
        console_running,
        console_review,
        console_disputes,
        console_roll,
        papers,
        public,
        health_routes,
    ):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
