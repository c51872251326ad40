"""`mandate serve` with the sealing at cast replaced by its padding alone.

bench/cast.py drives this beside the real server: the difference in throughput is what sealing
each ballot to the tally key costs. Never a way to run Mandate.

    python -m bench.serve_unsealed PORT
"""

import sys
from collections.abc import Mapping
from typing import Any

from app import cli, proof, tally_key


def padded_only(public_key: str, payload: Mapping[str, Any], *, size: int) -> bytes:
    return proof.canonical_json(payload).ljust(size)


if __name__ == "__main__":
    tally_key.seal = padded_only
    cli.serve(port=int(sys.argv[1]))
