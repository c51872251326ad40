"""A throwaway PostgreSQL server: initdb into a temp dir, listen on loopback, stop afterwards."""

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _bindir() -> Path:
    out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def _as_postgres(args: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root: drop to the postgres account when we are root.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *args]
    return args


@dataclass(frozen=True)
class PostgresServer:
    """A server's data directory and start options, so a test can stop it and start it again."""

    url: str
    data: Path
    options: str
    log: Path

    def start(self) -> None:
        _pg_ctl(self.data, "-o", self.options, "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server; `immediate` is the crash a power cut or a `kill -9` would be."""
        _pg_ctl(self.data, "-m", mode, "-w", "stop")


def _pg_ctl(data: Path, *args: str, check: bool = True) -> None:
    subprocess.run(
        _as_postgres([str(_bindir() / "pg_ctl"), "-D", str(data), *args]),
        check=check,
        capture_output=True,
    )


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """Start a PostgreSQL server with an empty database `mandate`; stop and remove it after."""
    bindir = _bindir()
    root = Path(tempfile.mkdtemp(prefix="mandate-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, user="postgres", group="postgres")
    data, port = root / "data", free_port()
    subprocess.run(
        _as_postgres(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ]
        ),
        check=True,
        capture_output=True,
    )
    server = PostgresServer(
        url=f"postgresql+psycopg://postgres@127.0.0.1:{port}/mandate",
        data=data,
        options=f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=200",
        log=root / "server.log",
    )
    server.start()
    try:
        subprocess.run(
            _as_postgres(
                [
                    str(bindir / "createdb"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(port),
                    "-U",
                    "postgres",
                    "mandate",
                ]
            ),
            check=True,
            capture_output=True,
        )
        yield server
    finally:
        _pg_ctl(data, "-m", "fast", "-w", "stop", check=False)
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def running_postgres() -> Iterator[str]:
    """Start a PostgreSQL server and yield a SQLAlchemy URL for an empty database."""
    with postgres_server() as server:
        yield server.url
