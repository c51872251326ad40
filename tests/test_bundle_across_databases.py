"""The same scripted ballot gives the same evidence bundle, byte for byte, on SQLite and on
PostgreSQL, and both verify.

The test needs both databases whatever `--db` says, so it starts its own PostgreSQL server
(tests/pgserver.py, about a second) rather than borrowing the session's: it is marked `db` and
runs, identically, in both passes of `make test` (`--db=sqlite`, and `--db=postgresql -m db`).
Skipping it in one pass would need a skip that reads like a gap; running it twice costs a few
seconds. Each side runs tests/scripted_ballot.py in a fresh interpreter, so nothing cached in
this process (settings, engine, signing key, clock) can make the two agree by accident.
"""

import difflib
import io
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from app import verify as verification
from tests import scripted_ballot
from tests.pgserver import running_postgres

pytestmark = pytest.mark.db
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with running_postgres() as url:
        yield url


def _scripted_bundle(database_url: str, data_dir: Path) -> Path:
    out = data_dir / "bundle.zip"
    command = [sys.executable, "-m", "tests.scripted_ballot", database_url, str(data_dir), str(out)]
    ran = subprocess.run(command, cwd=ROOT, env=os.environ.copy(), capture_output=True, text=True)
    assert ran.returncode == 0, f"{database_url}:\n{ran.stderr}"
    return out


def _differences(first: bytes, second: bytes) -> list[str]:
    """What differs between two bundles, member by member, for a failure someone can act on."""
    a, b = zipfile.ZipFile(io.BytesIO(first)), zipfile.ZipFile(io.BytesIO(second))
    found = []
    if a.namelist() != b.namelist():
        found.append(f"members: {a.namelist()} != {b.namelist()}")
    for name in sorted(set(a.namelist()) & set(b.namelist())):
        left, right = a.read(name), b.read(name)
        if left == right:
            continue
        if name.endswith(".pdf"):
            found.append(f"{name} differs ({len(left)} and {len(right)} bytes)")
            continue
        lines = difflib.unified_diff(
            left.decode().splitlines(),
            right.decode().splitlines(),
            "sqlite",
            "postgresql",
            n=0,
            lineterm="",
        )
        found.append(f"{name}:\n" + "\n".join(list(lines)[:12]))
    if not found:
        found.append("every member is the same: the zip's own headers differ")
    return found


def test_sqlite_and_postgresql_give_byte_identical_bundles_that_verify(
    postgres_url: str, tmp_path: Path
) -> None:
    sqlite_dir, postgres_dir = tmp_path / "sqlite", tmp_path / "postgresql"
    sqlite_dir.mkdir()
    postgres_dir.mkdir()
    with ThreadPoolExecutor(max_workers=2) as pool:
        on_sqlite = pool.submit(
            _scripted_bundle, f"sqlite:///{sqlite_dir / 'mandate.db'}", sqlite_dir
        )
        on_postgres = pool.submit(_scripted_bundle, postgres_url, postgres_dir)
        bundles = {"sqlite": on_sqlite.result(), "postgresql": on_postgres.result()}

    for database, path in bundles.items():
        checks = verification.verify(path, key=scripted_ballot.service_public_key())
        assert [c for c in checks if not c.ok] == [], database
        # The comparison means something only if the script reached every part of the bundle.
        details = {c.name: c.detail for c in checks}
        assert details["recount"].startswith(f"{len(scripted_ballot.VOTES)} ballots recounted")
        assert "Ann Auditor" in details["countersignatures"]
        names = set(zipfile.ZipFile(path).namelist())
        assert {"documents/01-proposal.pdf", "attestations/01-ann-auditor.json"} <= names
    first, second = (path.read_bytes() for path in bundles.values())
    assert first == second, "\n".join(_differences(first, second))
