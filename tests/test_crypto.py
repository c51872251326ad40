"""Tokens, receipt codes and keyed hashes."""

from collections import Counter

from app import crypto, proof


def test_receipt_codes_use_all_32_readable_symbols_evenly() -> None:
    codes = [crypto.new_receipt_code() for _ in range(4000)]
    assert len(set(codes)) == len(codes)
    assert all(len(c) == 24 and [len(g) for g in c.split("-")] == [4] * 5 for c in codes)
    counts = Counter("".join(codes).replace("-", ""))
    assert set(counts) == set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")
    # 80,000 symbols over 32: each close to 2,500 (a biased mapping would be far off).
    assert all(2000 < n < 3000 for n in counts.values())


def test_a_receipt_code_typed_loosely_is_read_back() -> None:
    code = crypto.new_receipt_code()
    typed = code.lower().replace("-", " ").replace("1", "l").replace("0", "o")
    assert crypto.normalise_receipt_code(typed) == code


def test_tokens_are_long_and_stored_only_as_a_keyed_hash(database_url: str) -> None:
    token = crypto.new_token()
    assert len(token) >= 32
    digest = crypto.token_hash(token)
    assert len(digest) == 64
    assert token not in digest
    assert digest != proof.sha256_hex(token.encode())  # keyed, not a plain digest
