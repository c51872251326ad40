"""The offline verifier: every claim of an evidence bundle, checked from the zip alone.

No database, no network. The counting rules are the same pure code the server counts with.
"""

import json
import re
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader

from app import counting, proof
from app.definitions import Question


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


class Unreadable(Exception):
    """The bundle cannot be read far enough for the remaining checks to mean anything."""


@dataclass
class Bundle:
    files: dict[str, bytes]
    manifest: dict[str, Any]
    signature: str

    @property
    def evidence(self) -> dict[str, Any]:
        evidence: dict[str, Any] = self.manifest["evidence"]
        return evidence

    @cached_property
    def trail(self) -> list[dict[str, Any]]:
        if "audit_log.jsonl" not in self.files:
            raise Unreadable("audit_log.jsonl is missing from the bundle")
        lines = self.files["audit_log.jsonl"].decode().splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    @cached_property
    def roll_rows(self) -> list[dict[str, str]]:
        return self.csv("roll.csv")

    @cached_property
    def roll(self) -> list[dict[str, Any]]:
        """The roll as hashed when the ballot opened."""
        return [
            {
                "ods_code": r["ods_code"],
                "name": r["name"],
                "locality": r["locality"],
                "list_size": int(r["list_size"]),
                "emails": r["emails"].split(";") if r["emails"] else [],
                "votes": int(r["votes"]),
            }
            for r in self.roll_rows
        ]

    @cached_property
    def box(self) -> dict[str, Any]:
        """The published box rebuilt from the CSV files, as its root was computed."""
        questions = [q["id"] for q in self.evidence["definition"]["questions"]]
        mode = self.evidence["ballot"]["receipt_mode"]
        rows = self.csv("ballot_box.csv")
        papers = [
            {
                "choices": {q: r[q] for q in questions},
                "locality": r["locality"],
                "votes": int(r["votes"]),
            }
            for r in rows
        ]
        if mode == "receipt_with_choices":
            entries = [
                p | {"receipt_code": r["receipt_code"]} for p, r in zip(papers, rows, strict=True)
            ]
            return {"receipt_mode": mode, "entries": entries}
        receipts = [r["receipt_code"] for r in self.csv("receipts.csv")]
        return {"receipt_mode": mode, "receipts": receipts, "ballots": papers}

    @property
    def papers(self) -> list[dict[str, Any]]:
        box = self.box
        papers: list[dict[str, Any]] = box["entries"] if "entries" in box else box["ballots"]
        return papers

    def csv(self, name: str) -> list[dict[str, str]]:
        if name not in self.files:
            raise Unreadable(f"{name} is missing from the bundle")
        return proof.read_csv(self.files[name])

    def entry(self, seq: int) -> dict[str, Any] | None:
        trail = self.trail
        return trail[seq - 1] if 0 < seq <= len(trail) and trail[seq - 1]["seq"] == seq else None

    def only(self, action: str) -> dict[str, Any]:
        found = [e for e in self.trail if e["action"] == action]
        if len(found) != 1:
            raise ValueError(f'the trail has {len(found)} "{action}" entries, not one')
        return found[0]

    @cached_property
    def roll_before_address_changes(self) -> list[dict[str, Any]]:
        """roll.csv with each address change the trail records undone, latest first."""
        rows = [dict(r) for r in self.roll]
        by_code = {r["ods_code"]: r for r in rows}
        for entry in reversed(self.trail):
            if entry["action"] != "addresses_changed":
                continue
            row = by_code.get(entry["payload"]["ods_code"])
            # A row that does not hold what the change left stays as it is, and fails to hash.
            if row is not None and row["emails"] == entry["payload"]["emails"]:
                row["emails"] = list(entry["payload"]["emails_was"])
        return rows

    @cached_property
    def additions(self) -> dict[str, dict[str, Any]]:
        """Practices the trail records as added to the roll while open, by ODS code."""
        return {
            e["payload"]["practice"]["ods_code"]: e["payload"]["practice"]
            for e in self.trail
            if e["action"] == "roll_addition_approved"
        }

    def voted(self) -> Iterator[dict[str, Any]]:
        return (e for e in self.trail if e["action"] == "voted")


def read(path: Path) -> Bundle:
    try:
        with zipfile.ZipFile(path) as archive:
            files = {info.filename: archive.read(info) for info in archive.infolist()}
    except (OSError, zipfile.BadZipFile) as exc:
        raise Unreadable(f"{path} is not a readable zip file ({exc})") from None
    try:
        manifest = json.loads(files["manifest.json"])
        signature = files["manifest.sig"].decode().strip()
    except KeyError as exc:
        raise Unreadable(f"the bundle has no {exc.args[0]}") from None
    except (ValueError, UnicodeDecodeError):
        raise Unreadable("manifest.json or manifest.sig is not readable") from None
    if not isinstance(manifest, dict) or manifest.get("format") != "mandate-evidence/1":
        raise Unreadable("manifest.json is not a Mandate evidence manifest (format 1)")
    return Bundle(files, manifest, signature)


def verify(path: Path, *, key: str | None, anchors: Sequence[str] = ()) -> list[Check]:
    """Every check, in order, then one per anchor; all must pass for the bundle to stand."""
    try:
        bundle = read(path)
    except Unreadable as exc:
        return [Check("bundle readable", False, str(exc))]
    checks = []
    steps: list[tuple[str, Callable[[Bundle], Check]]] = [
        ("service signature", lambda b: _signature(b, key)),
        ("file hashes", _file_hashes),
        ("fingerprint", _fingerprint),
        ("audit chain", _chain),
        ("frozen ballot", _frozen),
        ("roll corrections", _roll_corrections),
        ("scrutiny", _scrutiny),
        ("ballot box root", _box_root),
        ("receipts unique", _receipts_unique),
        ("recount", _recount),
        ("ballots = practices voted", _turnout),
        ("votes within the period", _vote_times),
        ("countersignatures", _attestations),
        ("disputes", _disputes),
    ]
    for name, step in steps:
        try:
            checks.append(step(bundle))
        except (Unreadable, KeyError, ValueError, TypeError, IndexError, AttributeError) as exc:
            # A malformed part fails its own check with a reason, never the whole run.
            reason = (
                f"missing {exc}"
                if isinstance(exc, KeyError)
                else str(exc)
                if isinstance(exc, Unreadable | ValueError)
                else "a part has the wrong shape"
            )
            checks.append(Check(name, False, f"the bundle is malformed: {reason}"))
    for anchor in anchors:
        try:
            checks.append(_anchor(bundle, anchor))
        except (Unreadable, KeyError, ValueError, TypeError, IndexError, AttributeError):
            malformed = "the bundle is malformed, so the anchor cannot be looked for"
            checks.append(Check(f"anchor {_short(anchor)}", False, malformed))
    return checks


_SHA256 = re.compile(r"[0-9a-f]{64}")


def _short(anchor: str) -> str:
    return anchor.strip()[:16] + "…" if len(anchor.strip()) > 16 else anchor.strip()


def _anchor(bundle: Bundle, anchor: str) -> Check:
    """A hash a recipient kept from an email lies on the bundle's chain, or is its box commitment.

    An email is sent outside the server, so a trail rewritten later (every hash after the change
    recomputed, which the chain check alone cannot see) no longer holds the entry it named.
    """
    # As an email prints it, or copied with spaces or capitals: the digits are what count.
    wanted = "".join(anchor.split()).lower()
    name = f"anchor {_short(wanted)}"
    if not _SHA256.fullmatch(wanted):
        return Check(name, False, f'"{anchor}" is not a SHA-256 hash (64 hexadecimal digits)')
    trail = bundle.trail
    problem = proof.chain_problem(trail)
    if problem is not None:
        return Check(name, False, f"the bundle's audit chain does not hold ({problem})")
    entry = next((e for e in trail if e["hash"] == wanted), None)
    if entry is not None:
        return Check(
            name, True, f"audit entry {entry['seq']} ({entry['action']}, {entry['at']}) has it"
        )
    for e in trail:
        payload = e["payload"]
        if e["action"] == "closed" and payload.get("sealed_sha256") == wanted:
            return Check(
                name,
                True,
                f"the sealed box fixed at close (entry {e['seq']}, "
                f"{payload['ballots_cast']} sealed ballots)",
            )
        names_root = e["action"] in ("closed", "box_opened", "published")
        if names_root and payload.get("ballot_box_root") == wanted:
            # The trail names the root; the box in the bundle must also be the one it names.
            if proof.box_root(bundle.box) != wanted:
                return Check(
                    name,
                    False,
                    f"entry {e['seq']} ({e['action']}) names this ballot-box root, but "
                    "ballot_box.csv is not that box",
                )
            return Check(
                name, True, f"the ballot-box root in entry {e['seq']} ({e['action']}) and the box"
            )
    return Check(
        name,
        False,
        "not in this bundle: no audit entry has this hash and it is not the box commitment "
        "(the trail was rewritten after the email that gave it, or the hash is from another "
        "ballot)",
    )


def _signature(bundle: Bundle, key: str | None) -> Check:
    embedded = bundle.manifest.get("signing_key", {}).get("public_key", "")
    message = bundle.files["manifest.json"]
    if key is None:
        consistent = proof.signature_valid(embedded, bundle.signature, message)
        return Check(
            "service signature",
            False,
            "no key given: the bundle is only internally consistent"
            + (" (signed by the key it names)" if consistent else ", and not even that")
            + ". Give the service's public key, obtained independently of the bundle, with --key.",
        )
    try:
        proof.public_key(key)
    except ValueError as exc:
        return Check("service signature", False, f"the key given is not usable: {exc}")
    if proof.signature_valid(key, bundle.signature, message):
        return Check(
            "service signature",
            True,
            f"manifest.json is signed by the key given ({proof.key_fingerprint(key)[:19]}…)",
        )
    if embedded != key and proof.signature_valid(embedded, bundle.signature, message):
        return Check(
            "service signature",
            False,
            "manifest.json is signed by another key than the one given (wrong key, or a bundle "
            "re-signed by someone else)",
        )
    return Check(
        "service signature", False, "the signature does not match manifest.json: it was edited"
    )


def _file_hashes(bundle: Bundle) -> Check:
    listed: dict[str, str] = bundle.manifest["files"]
    present = set(bundle.files) - {"manifest.json", "manifest.sig"}
    missing = sorted(set(listed) - present)
    extra = sorted(present - set(listed))
    changed = sorted(
        name
        for name in set(listed) & present
        if proof.sha256_hex(bundle.files[name]) != listed[name]
    )
    problems = []
    if changed:
        problems.append("changed since signing: " + ", ".join(changed))
    if missing:
        problems.append("missing: " + ", ".join(missing))
    if extra:
        problems.append("not in the manifest: " + ", ".join(extra))
    if problems:
        return Check("file hashes", False, "; ".join(problems))
    return Check("file hashes", True, f"all {len(listed)} files match the manifest")


def _fingerprint(bundle: Bundle) -> Check:
    evidence = bundle.evidence
    if proof.fingerprint(evidence) != bundle.manifest["fingerprint"]:
        return Check("fingerprint", False, "the evidence record does not hash to the fingerprint")
    covered = evidence["files"]
    wrong = sorted(
        name
        for name, digest in covered.items()
        if proof.sha256_hex(bundle.files.get(name, b"")) != digest
    )
    if wrong:
        return Check("fingerprint", False, "files differ from the record: " + ", ".join(wrong))
    return Check(
        "fingerprint", True, f"{bundle.manifest['fingerprint']} covers {len(covered)} files"
    )


def _chain(bundle: Bundle) -> Check:
    trail = bundle.trail
    problem = proof.chain_problem(trail)
    if problem is not None:
        return Check("audit chain", False, problem)
    head = bundle.manifest["audit_head"]
    if not trail or trail[-1]["seq"] != head["seq"] or trail[-1]["hash"] != head["hash"]:
        return Check("audit chain", False, "the chain does not end at the head the manifest names")
    at_publish = bundle.evidence["audit_at_publish"]
    published = bundle.entry(at_publish["seq"])
    if published is None or published["hash"] != at_publish["hash"]:
        return Check("audit chain", False, "the publication recorded in the evidence is not in it")
    if published["action"] != "published":
        return Check("audit chain", False, f"entry {published['seq']} is not the publication")
    return Check(
        "audit chain", True, f"{len(trail)} entries from genesis to head {head['hash'][:16]}…"
    )


def _frozen(bundle: Bundle) -> Check:
    """The definition, documents and roll in the bundle are the ones frozen at open."""
    opened = bundle.only("opened")["payload"]
    definition = bundle.evidence["definition"]
    # The final roll less the approved additions is the roll as frozen at open.
    added = bundle.additions
    roll = [r for r in bundle.roll_before_address_changes if r["ods_code"] not in added]
    frozen = {
        "definition": definition,
        "documents": [d["sha256"] for d in definition["documents"]],
        "roll": roll,
    }
    problems = []
    if proof.sha256_hex(proof.canonical_json(frozen)) != opened["frozen_hash"]:
        problems.append("the definition or roll differs from what was frozen at open")
    if proof.sha256_hex(proof.canonical_json(roll)) != opened["roll_sha256"]:
        problems.append("roll.csv is not the roll frozen at open")
    documents = {n: c for n, c in bundle.files.items() if n.startswith("documents/")}
    digests = sorted(proof.sha256_hex(c) for c in documents.values())
    if digests != sorted(d["sha256"] for d in definition["documents"]):
        problems.append("the documents are not the ones voters were shown")
    if problems:
        return Check("frozen ballot", False, "; ".join(problems))
    plus = f" (and {len(added)} added while open)" if added else ""
    return Check(
        "frozen ballot",
        True,
        f"definition, {len(roll)} practices{plus} and {len(documents)} document(s) as frozen at "
        "open",
    )


def _roll_corrections(bundle: Bundle) -> Check:
    """The final roll is the frozen roll plus additions, each proposed while open with a reason
    and approved by a scrutineer the ballot names, before close; and address changes, each
    while open with a reason."""
    trail = bundle.trail
    opened, closed = bundle.only("opened")["seq"], bundle.only("closed")["seq"]
    named = bundle.evidence["definition"].get("governance", {}).get("scrutineer_accounts", [])
    proposals = {
        e["payload"]["number"]: e for e in trail if e["action"] == "roll_addition_proposed"
    }
    approvals = [e for e in trail if e["action"] == "roll_addition_approved"]
    final = {r["ods_code"]: r for r in bundle.roll_before_address_changes}
    problems = []
    changes = [e for e in trail if e["action"] == "addresses_changed"]
    for change in changes:
        code = change["payload"]["ods_code"]
        if not opened < change["seq"] < closed:
            problems.append(f"the addresses of {code} were changed outside the voting period")
        if not str(change["payload"].get("reason", "")).strip():
            problems.append(f"the addresses of {code} were changed without a reason")
    for approval in approvals:
        number, practice = approval["payload"]["number"], approval["payload"]["practice"]
        code, proposal = practice["ods_code"], proposals.get(approval["payload"]["number"])
        if proposal is None or proposal["seq"] > approval["seq"]:
            problems.append(f"addition {number} ({code}) was approved without being proposed")
        elif proposal["payload"]["ods_code"] != code or not proposal["payload"]["reason"]:
            problems.append(f"addition {number} approved another practice than was proposed")
        if not opened < approval["seq"] < closed:
            problems.append(f"addition {number} ({code}) was approved outside the voting period")
        if approval["actor"].removeprefix("staff:") not in named:
            problems.append(
                f"addition {number} ({code}) was approved by {approval['actor']}, not a "
                "scrutineer the ballot names"
            )
        if final.get(code) != practice:
            problems.append(
                f"roll.csv's row for {code} is not the practice the scrutineer approved"
            )
    recorded = sorted(a["ods_code"] for a in bundle.evidence.get("roll_additions", []))
    if recorded != sorted(bundle.additions):
        problems.append("the evidence record lists other additions than the trail")
    if len(bundle.additions) != len(approvals):
        problems.append("the trail adds a practice twice")
    if problems:
        return Check("roll corrections", False, "; ".join(problems))
    if not approvals and not changes:
        return Check("roll corrections", True, "none: the roll is the one frozen at open")
    codes = ", ".join(sorted(bundle.additions)) or "none"
    return Check(
        "roll corrections",
        True,
        f"roll.csv is the frozen roll plus {len(approvals)} addition(s) approved by the "
        f"scrutineer while open ({codes}) and {len(changes)} address change(s) made while open "
        "with a reason",
    )


def _scrutiny(bundle: Bundle) -> Check:
    """A scrutineer approved exactly what opened, and countersigned exactly what was published."""
    trail = bundle.trail
    opened, published = bundle.only("opened"), bundle.only("published")
    before_open = [e for e in trail if e["seq"] < opened["seq"]]
    approvals = [e for e in before_open if e["action"] in ("approved", "approval_withdrawn")]
    if not approvals or approvals[-1]["action"] != "approved":
        return Check("scrutiny", False, "no scrutineer's approval stood when the ballot opened")
    if approvals[-1]["payload"]["frozen_hash"] != opened["payload"]["frozen_hash"]:
        return Check("scrutiny", False, "the scrutineer approved another ballot than opened")
    result = published["payload"]["result"]
    counted = proof.count_hash(
        ballot_box_root=published["payload"]["ballot_box_root"],
        ballots_cast=result["ballots_cast"],
        result=result,
    )
    signed = [
        e for e in trail if e["action"] == "count_countersigned" and e["seq"] < published["seq"]
    ]
    if not signed or signed[-1]["payload"]["count_hash"] != counted:
        return Check("scrutiny", False, "no scrutineer countersigned the count that was published")
    return Check(
        "scrutiny",
        True,
        f"approved by {approvals[-1]['actor']} before opening; count countersigned by "
        f"{signed[-1]['actor']} before publication",
    )


def _box_root(bundle: Bundle) -> Check:
    """The published box is the one opened from the sealed box the close fixed."""
    root = proof.box_root(bundle.box)
    closed = bundle.only("closed")["payload"]
    sealed = any(e["action"] == "box_opened" for e in bundle.trail)
    if sealed:
        opened = bundle.only("box_opened")
        if opened["seq"] < bundle.only("closed")["seq"]:
            return Check("ballot box root", False, "the box was opened before the ballot closed")
        if opened["payload"]["sealed_sha256"] != closed["sealed_sha256"]:
            return Check(
                "ballot box root",
                False,
                "the sealed box opened is not the one fixed at close (a sealed ballot was "
                "changed, added or removed)",
            )
        if opened["payload"]["ballots_opened"] != closed["ballots_cast"]:
            return Check(
                "ballot box root",
                False,
                f"{opened['payload']['ballots_opened']} ballots were opened from the "
                f"{closed['ballots_cast']} sealed at close",
            )
        committed, when = opened["payload"]["ballot_box_root"], "when the sealed box was opened"
    else:  # a bundle from before ballots were sealed: the close committed to the plain box
        committed, when = closed["ballot_box_root"], "at close"
    published = bundle.only("published")["payload"]["ballot_box_root"]
    if root != committed:
        return Check(
            "ballot box root",
            False,
            f"ballot_box.csv is not the box committed to {when} (a ballot was changed, added or "
            "removed)",
        )
    if published != committed or bundle.evidence["ballot_box_root"] != committed:
        return Check(
            "ballot box root", False, "the publication names another box than the one committed"
        )
    return Check("ballot box root", True, f"{root[:16]}… as committed {when}")


def _receipts_unique(bundle: Bundle) -> Check:
    box, papers = bundle.box, bundle.papers
    receipts = [e["receipt_code"] for e in box["entries"]] if "entries" in box else box["receipts"]
    repeated = sorted(code for code, n in Counter(receipts).items() if n > 1)
    if repeated:
        return Check("receipts unique", False, f"{len(repeated)} receipt code(s) appear twice")
    if len(receipts) != len(papers):
        return Check(
            "receipts unique",
            False,
            f"{len(receipts)} receipts for {len(papers)} ballots: each ballot has one receipt",
        )
    return Check("receipts unique", True, f"{len(receipts)} distinct receipt codes, one a ballot")


def _recount(bundle: Bundle) -> Check:
    definition = bundle.evidence["definition"]
    rules = counting.Rules.model_validate(definition["rules"])
    questions = [Question.model_validate(q) for q in definition["questions"]]
    papers = bundle.papers
    electors = [counting.Elector(locality=r["locality"], votes=r["votes"]) for r in bundle.roll]
    recount = counting.declare(
        rules,
        questions=[(q.id, q.options, q.rules) for q in questions],
        electors=electors,
        papers=[counting.Paper(p["locality"], p["votes"], p["choices"]) for p in papers],
    )
    declared = bundle.evidence["result"]
    in_trail = bundle.only("published")["payload"]["result"]
    if recount != declared or recount != in_trail:
        against = declared if recount != declared else in_trail
        declared_by_id = {q["question_id"]: q for q in against["questions"]}
        differs = [
            f"{mine['question_id']} ({mine['outcome']} on recount, "
            f"{declared_by_id.get(mine['question_id'], {}).get('outcome')} declared)"
            for mine in recount["questions"]
            if mine != declared_by_id.get(mine["question_id"])
        ]
        what = ", ".join(differs) or "the totals"
        return Check("recount", False, f"the recount differs from the declared result: {what}")
    outcomes = ", ".join(f"{q['question_id']} {q['outcome']}" for q in recount["questions"])
    return Check("recount", True, f"{len(papers)} ballots recounted: {outcomes}")


def _turnout(bundle: Bundle) -> Check:
    papers = bundle.papers
    roll_voted = {r["ods_code"] for r in bundle.roll_rows if r["voted"] == "yes"}
    trail_voted = [e["payload"]["ods_code"] for e in bundle.voted()]
    closed = bundle.only("closed")["payload"]
    problems = []
    if len(set(trail_voted)) != len(trail_voted):
        problems.append("the trail records a practice voting twice")
    if set(trail_voted) != roll_voted:
        problems.append(
            f"roll.csv marks {len(roll_voted)} practices as voted, the trail {len(trail_voted)}"
        )
    if len(papers) != len(roll_voted):
        problems.append(f"{len(papers)} ballots but {len(roll_voted)} practices marked as voted")
    if closed["ballots_cast"] != len(papers):
        problems.append(f"the close recorded {closed['ballots_cast']} ballots, not {len(papers)}")
    if problems:
        return Check("ballots = practices voted", False, "; ".join(problems))
    return Check(
        "ballots = practices voted",
        True,
        f"{len(papers)} ballots, {len(roll_voted)} practices marked as voted in roll.csv and trail",
    )


def _vote_times(bundle: Bundle) -> Check:
    ballot = bundle.evidence["ballot"]
    opens, closes = ballot["opens_at"], ballot["closes_at"]
    opened, closed = bundle.only("opened")["seq"], bundle.only("closed")["seq"]
    outside = [
        e["payload"]["ods_code"]
        for e in bundle.voted()
        if not (opened < e["seq"] < closed and _when(opens) <= _when(e["at"]) < _when(closes))
    ]
    late_in_roll = [
        r["ods_code"]
        for r in bundle.roll_rows
        if r["voted_at"] and not _when(opens) <= _when(r["voted_at"]) < _when(closes)
    ]
    if outside or late_in_roll:
        names = ", ".join(sorted(set(outside + late_in_roll)))
        return Check(
            "votes within the period", False, f"votes outside {opens} to {closes}: {names}"
        )
    return Check("votes within the period", True, f"every vote between {opens} and {closes}")


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _attestations(bundle: Bundle) -> Check:
    names = sorted(n for n in bundle.files if n.startswith("attestations/"))
    attested = [e for e in bundle.trail if e["action"] == "attested"]
    if not names and not attested:
        return Check("countersignatures", True, "none yet (the bundle verifies without them)")
    fingerprint = bundle.manifest["fingerprint"]
    problems, good = [], []
    signatures_in_trail = {e["payload"]["signature"] for e in attested}
    for name in names:
        item = json.loads(bundle.files[name])
        message = proof.attestation_message(
            fingerprint=item["fingerprint"], name=item["name"], capacity=item["capacity"],
            statement=item["statement"],
        )  # fmt: skip
        if item["fingerprint"] != fingerprint:
            problems.append(f"{name} signs another bundle's fingerprint")
        elif not proof.signature_valid(item["public_key"], item["signature"], message):
            problems.append(f"{name}: the signature does not match its text")
        elif item["signature"] not in signatures_in_trail:
            problems.append(f"{name} is not recorded in the audit trail")
        else:
            key = proof.key_fingerprint(item["public_key"])[:19]
            good.append(f"{item['name']} ({item['capacity']}, key {key}…)")
    if len(names) != len(attested):
        problems.append(f"{len(attested)} in the trail but {len(names)} files in attestations/")
    if problems:
        return Check("countersignatures", False, "; ".join(problems))
    return Check("countersignatures", True, "valid, by " + "; ".join(good))


def _disputes(bundle: Bundle) -> Check:
    """Every dispute the trail records is in disputes.json, with the text the trail hashed."""
    if "disputes.json" not in bundle.files:
        return Check("disputes", True, "no disputes file: made before disputes were recorded")
    listed = {d["id"]: d for d in json.loads(bundle.files["disputes.json"])}
    recorded = {
        e["payload"]["dispute_id"]: e for e in bundle.trail if e["action"] == "dispute_recorded"
    }
    if set(listed) != set(recorded):
        missing = sorted(set(recorded) - set(listed))
        extra = sorted(set(listed) - set(recorded))
        return Check(
            "disputes", False,
            f"disputes.json and the trail disagree (only in the trail: {missing}; only in the "
            f"file: {extra})",
        )  # fmt: skip
    for number, d in sorted(listed.items()):
        digest = proof.sha256_hex(d["text"].encode())
        if digest != recorded[number]["payload"]["text_sha256"]:
            return Check("disputes", False, f"dispute {number}'s text is not the one recorded")
    return Check("disputes", True, f"{len(listed)} recorded, each with the text its trail hashed")


def report_html(path: Path, checks: list[Check]) -> str:
    """The checks as a printable page an internal auditor can sign."""
    try:
        manifest: dict[str, Any] | None = read(path).manifest
    except Unreadable:
        manifest = None
    environment = Environment(loader=PackageLoader("app", "templates"), autoescape=True)
    return environment.get_template("verify_report.html").render(
        bundle=path.name,
        bundle_sha256=proof.sha256_hex(path.read_bytes()),
        manifest=manifest,
        checks=checks,
        passed=all(c.ok for c in checks),
    )
