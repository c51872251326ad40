"""Cast throughput: the real server against the ceiling of one durable SQLite INSERT per POST.

Starts `mandate serve` on SQLite (WAL, synchronous=FULL), opens a ballot of N practices, takes
their links from the maildir, and drives POST /api/v1/vote/{token} with wrk at C connections,
each request with a link no other request uses. It does so twice on the same ballot, half the
links each: once with every ballot sealed to the tally key (the product), once with the sealing
replaced by its padding alone (bench/serve_unsealed.py), and prints what sealing costs (the
issue's floor: under 15 %). Then drives a minimal FastAPI app doing one durable INSERT per POST
with the same load, and prints votes/s, p50/p99 and the ratio.

    python bench/cast.py [--practices 12000] [--connections 50] [--seconds 8]
"""

import argparse
import json
import mailbox
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2 as httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent
# The floor: sealing each ballot costs the cast endpoint less than this of its throughput.
SEALING_FLOOR = 0.15


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for(url: str, process: subprocess.Popen[bytes]) -> None:
    for _ in range(200):
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit(f"server at {url} did not start")


def prepare(env: dict[str, str], practices: int, tokens_file: Path) -> None:
    """Open a ballot of N practices in this process, deliver it, and collect the links."""
    os.environ.update(env)
    from app import mail, outbox
    from bench.ballot import open_ballot

    open_ballot(practices)
    outbox.deliver_pending()
    pattern = re.compile(r"/vote/([A-Za-z0-9_-]+)")
    tokens = []
    for message in mailbox.Maildir(env["MAILDIR"], create=False):
        found = pattern.search(mail.plain_text(message))
        assert found is not None
        tokens.append(found.group(1))
    tokens_file.write_text("\n".join(tokens) + "\n")


def drive(url: str, tokens_file: Path, connections: int, seconds: int) -> dict[str, float]:
    threads = 2
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(ROOT / "bench" / "cast.lua"),
            url,
        ],
        env={**os.environ, "BENCH_TOKENS": str(tokens_file), "BENCH_THREADS": str(threads)},
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(line for line in out.stdout.splitlines() if line.startswith("BENCH "))
    figures: dict[str, float] = json.loads(line.removeprefix("BENCH "))
    figures["per_second"] = figures["ok"] / figures["seconds"]
    return figures


def serve(args: list[str], env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        args, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_for(f"http://127.0.0.1:{port}/openapi.json", process)
    return process


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--practices", type=int, default=12000)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=8)
    options = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk (or run `make bench`)")

    work = Path(tempfile.mkdtemp(prefix="mandate-bench-"))
    env = {
        **os.environ,
        "MANDATE_ENV": "dev",
        "DATA_DIR": str(work),
        "DATABASE_URL": f"sqlite:///{work / 'mandate.db'}",
        "MAILDIR": str(work / "mail"),
        "SECRET_KEY": "bench-secret-key-bench-secret-key-bench",
        "BASELINE_DATABASE_URL": f"sqlite:///{work / 'baseline.db'}",
    }
    tokens_file = work / "tokens.txt"
    started = time.perf_counter()
    prepare(env, options.practices, tokens_file)
    print(
        f"opened a ballot of {options.practices} practices in {time.perf_counter() - started:.1f}s"
    )

    # Alternate links between the two runs, so neither gets the practices opened first.
    tokens = tokens_file.read_text().split()
    halves = {"sealed": work / "tokens-sealed.txt", "unsealed": work / "tokens-unsealed.txt"}
    halves["sealed"].write_text("\n".join(tokens[0::2]) + "\n")
    halves["unsealed"].write_text("\n".join(tokens[1::2]) + "\n")
    results = {}
    for name, command in (
        ("sealed", [str(BIN / "mandate"), "serve", "--port", "{port}"]),
        ("unsealed", [sys.executable, "-m", "bench.serve_unsealed", "{port}"]),
        (
            "baseline",
            [
                str(BIN / "uvicorn"),
                "bench.baseline_app:app",
                "--port",
                "{port}",
                "--no-access-log",
                "--log-level",
                "warning",
            ],
        ),
    ):
        port = free_port()
        process = serve([part.replace("{port}", str(port)) for part in command], env, port)
        try:
            links = halves.get(name, tokens_file)
            results[name] = drive(
                f"http://127.0.0.1:{port}", links, options.connections, options.seconds
            )
        finally:
            process.terminate()
            process.wait(timeout=30)
    shutil.rmtree(work, ignore_errors=True)

    print(
        f"C={options.connections}, {options.seconds}s each, "
        "SQLite WAL synchronous=FULL, one server process each"
    )
    print(
        f"{'':10} {'votes/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'409s':>6} {'other':>6} {'errors':>6}"
    )
    for name, r in results.items():
        print(
            f"{name:10} {r['per_second']:9.0f} {r['p50_ms']:8.1f} {r['p99_ms']:8.1f} "
            f"{int(r['refused']):6d} {int(r['other']):6d} {int(r['errors']):6d}"
        )
    ratio = results["sealed"]["per_second"] / results["baseline"]["per_second"]
    print(f"ratio mandate (sealed)/baseline: {ratio:.2f}")
    cost = 1 - results["sealed"]["per_second"] / results["unsealed"]["per_second"]
    verdict = "within" if cost < SEALING_FLOOR else "OVER"
    print(f"sealing costs {cost:.1%} of cast throughput (floor {SEALING_FLOOR:.0%}, {verdict})")


if __name__ == "__main__":
    main()
