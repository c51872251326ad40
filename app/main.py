"""create_app(): routers, error handlers, logging that never carries a secret."""

import contextlib
import functools
import logging
import re
import time
from collections.abc import AsyncIterator

import anyio
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import errors, health, outbox, schedule, signing
from app.config import get_settings
from app.db import database_turn, get_engine, session_scope
from app.routes import auth, ballots, evidence, public, templates, vote_api, vote_pages
from app.routes import health as health_routes

log = logging.getLogger("mandate.access")

# Anything after /vote/ is a voting token: it never reaches a log line.
_TOKEN_IN_PATH = re.compile(r"/vote/[^/?#]+")


def redact(path: str) -> str:
    return _TOKEN_IN_PATH.sub("/vote/[link]", path)


def _wants_html(request: Request) -> bool:
    return request.url.path.startswith("/vote/") or request.url.path.startswith("/ballots/")


def _error_response(request: Request, exc: errors.AppError) -> Response:
    headers = {"Retry-After": "1"} if isinstance(exc, ServerBusy | DatabaseUnavailable) else None
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


class DatabaseUnavailable(errors.AppError):
    status_code = 503


def _is_contention(exc: DBAPIError) -> bool:
    """A lock timeout or serialisation failure: the request changed nothing and may be retried."""
    text = str(exc.orig).lower()
    code = getattr(exc.orig, "sqlstate", None)
    return "database is locked" in text or code in {"40001", "40P01", "55P03"}


class HeadersAndAccessLog:
    """Security headers on every response, and an access log line with the link redacted."""

    def __init__(self, app: ASGIApp, activity: outbox.Activity) -> None:
        self.app = app
        self.activity = activity

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.activity.touch()
        started = time.perf_counter()
        path: str = scope["path"]
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                # A voting link must not leak through a referrer, a cache or a search engine.
                headers["Referrer-Policy"] = "no-referrer"
                headers["X-Content-Type-Options"] = "nosniff"
                headers["X-Frame-Options"] = "DENY"
                if path.startswith(("/vote/", "/api/", "/ballots/")):
                    headers["Cache-Control"] = "no-store"
                    headers["X-Robots-Tag"] = "noindex, nofollow"
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            elapsed = (time.perf_counter() - started) * 1000
            log.info("%s %s %s %.1fms", scope["method"], redact(path), status, elapsed)


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
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.database_turn = database_turn()
    app.state.database_is_sqlite = get_settings().database_url.startswith("sqlite")

    @app.exception_handler(errors.AppError)
    async def _app_error(request: Request, exc: errors.AppError) -> Response:
        return _error_response(request, exc)

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

    app.state.activity = outbox.Activity()
    app.add_middleware(HeadersAndAccessLog, activity=app.state.activity)
    for module in (auth, ballots, evidence, vote_api, vote_pages, public, health_routes):
        app.include_router(module.router)
    return app
