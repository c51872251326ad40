"""The logging set-up `mandate serve` applies, writing to a buffer a test can read."""

import contextlib
import io
import logging
import logging.config
from collections.abc import Iterator

from app import logs


@contextlib.contextmanager
def captured(log_format: logs.LogFormat, level: str = "INFO") -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved, saved_level = root.handlers[:], root.level
    quiet = {name: logging.getLogger(name).level for name in ("sqlalchemy.engine",)}
    logging.config.dictConfig(logs.dict_config(log_format, level))
    buffer = io.StringIO()
    try:
        [handler] = root.handlers
        assert isinstance(handler, logging.StreamHandler)
        handler.setStream(buffer)
        yield buffer
    finally:
        for h in root.handlers[:]:
            root.removeHandler(h)
        for h in saved:
            root.addHandler(h)
        root.setLevel(saved_level)
        for name, level_before in quiet.items():
            logging.getLogger(name).setLevel(level_before)
