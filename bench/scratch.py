"""A throwaway work directory and the settings of a dev server on SQLite inside it."""

import os
import tempfile
from pathlib import Path


def sqlite_environment(prefix: str) -> Path:
    """Make the directory and point this process's settings at it; set before `app` is read."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ.update(
        MANDATE_ENV="dev",
        DATA_DIR=str(work),
        DATABASE_URL=f"sqlite:///{work / 'mandate.db'}",
        MAILDIR=str(work / "mail"),
        SECRET_KEY="bench-secret-key-bench-secret-key-bench",
    )
    return work
