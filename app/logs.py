"""Log lines that carry the request's id, as text or as one JSON object per line."""

import contextvars
import json
import logging
import logging.config
import re
import secrets
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["text", "json"]

# "-" outside a request: the outbox sender, the scheduler, start-up.
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

# An id from a proxy or a client is kept only when it cannot forge or break a log line.
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")

# Fields the access log passes in `extra`, written as JSON fields of their own.
_FIELDS = ("method", "path", "status", "duration_ms")


def new_request_id(incoming: str | None) -> str:
    """The caller's X-Request-ID when it is a short safe token, else a fresh one."""
    if incoming is not None and _SAFE_ID.match(incoming):
        return incoming
    return secrets.token_hex(12)


class RequestIdFilter(logging.Filter):
    """Give every record the id of the request it was logged in."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", request_id.get()),
            "message": record.getMessage(),
        }
        for field in _FIELDS:
            if hasattr(record, field):
                line[field] = getattr(record, field)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


def dict_config(log_format: LogFormat, level: str = "INFO") -> dict[str, Any]:
    """Every logger (uvicorn's too) to stderr in this format: for dictConfig or uvicorn's
    log_config, which applies it in each worker process."""
    formatter: dict[str, Any] = (
        {"()": f"{__name__}.JsonFormatter"} if log_format == "json" else {"format": TEXT_FORMAT}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": f"{__name__}.RequestIdFilter"}},
        "formatters": {"default": formatter},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "filters": ["request_id"],
                "formatter": "default",
            }
        },
        "root": {"level": level, "handlers": ["default"]},
        # uvicorn's own lines go through the same handler; its access log stays off (ours
        # redacts voting links).
        "loggers": {
            "uvicorn": {"level": "INFO", "handlers": [], "propagate": True},
            "uvicorn.error": {"level": "INFO", "handlers": [], "propagate": True},
            "uvicorn.access": {"level": "WARNING", "handlers": [], "propagate": False},
            # SQLAlchemy keeps its statements to itself unless asked; the engines hide the values.
            "sqlalchemy.engine": {"level": "INFO" if level == "DEBUG" else "WARNING"},
        },
    }


def configure(log_format: LogFormat, level: str = "INFO") -> None:
    logging.config.dictConfig(dict_config(log_format, level))
