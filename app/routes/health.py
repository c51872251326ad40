"""Liveness and readiness, for load balancers and orchestrators."""

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError

from app import health
from app.db import get_engine

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up and answering."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "Not ready: database or schema"}})
def readyz() -> Any:
    """The database answers and its schema is the one this code needs."""
    try:
        current, head = health.schema(get_engine())
    except DBAPIError:
        return JSONResponse({"status": "unavailable", "database": "unreachable"}, 503)
    if current != head:
        return JSONResponse(
            {"status": "unavailable", "database": "ok", "schema": current, "needs": head}, 503
        )
    return {"status": "ok", "database": "ok", "schema": current}
