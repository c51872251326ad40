"""Invitation delivery: open a ballot of N practices and send every invitation over SMTP.

A local aiosmtpd server accepts and discards; Mandate runs on SQLite (WAL, synchronous=FULL),
mints each link as it sends, and delivers through the outbox exactly as `mandate mail send`
does. Prints messages per second.

    python bench/mail.py [--practices 7000]
"""

import argparse
import os
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Sink:
    def __init__(self) -> None:
        self.received = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received += 1
        return "250 OK"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--practices", type=int, default=7000)
    options = parser.parse_args()

    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    work = Path(tempfile.mkdtemp(prefix="mandate-bench-mail-"))
    os.environ.update(
        MANDATE_ENV="dev",
        DATA_DIR=str(work),
        DATABASE_URL=f"sqlite:///{work / 'mandate.db'}",
        SECRET_KEY="bench-secret-key-bench-secret-key-bench",
        MAIL_BACKEND="smtp",
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=str(controller.port),
        SMTP_SECURITY="none",
    )
    from app import outbox
    from bench.ballot import open_ballot

    started = time.perf_counter()
    open_ballot(options.practices)
    queued_in = time.perf_counter() - started
    started = time.perf_counter()
    report = outbox.deliver_pending()
    seconds = time.perf_counter() - started
    controller.stop()

    print(f"queued {options.practices} invitations in {queued_in:.1f}s (opening the ballot)")
    print(
        f"delivered {report.sent} ({sink.received} received, {report.failed} failed, "
        f"{report.retrying} to retry) in {seconds:.1f}s"
    )
    print(f"messages/s: {report.sent / seconds:.0f}")


if __name__ == "__main__":
    main()
