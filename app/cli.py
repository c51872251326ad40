"""The `mandate` command for operators."""

import base64
import getpass
import json
import logging
import mailbox
import os
import re
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import anyio
import typer
import uvicorn
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import (
    announcements,
    ballots,
    clock,
    definitions,
    disputes,
    errors,
    evidence,
    logs,
    mail,
    national_list,
    outbox,
    proof,
    roll,
    scrutiny,
    sealed_box,
    signing,
    staff,
    tally_key,
    transfer,
    voiding,
)
from app import verify as verification
from app.config import get_settings
from app.db import migrate as run_migrations
from app.db import session_scope
from app.models import Ballot, BallotStatus, Role, StaffUser

app = typer.Typer(
    help="Mandate: secure balloting for member-practice mandates.", no_args_is_help=True
)
staff_app = typer.Typer(help="Staff accounts.", no_args_is_help=True)
ballot_app = typer.Typer(help="Ballots: load, open, close, publish, status.", no_args_is_help=True)
app.add_typer(staff_app, name="staff")
app.add_typer(ballot_app, name="ballot")
mail_app = typer.Typer(help="The outbox.", no_args_is_help=True)
app.add_typer(mail_app, name="mail")
digest_app = typer.Typer(help="The scrutineers' daily digest.", no_args_is_help=True)
app.add_typer(digest_app, name="digest")
national_app = typer.Typer(
    help="The national list of GP practices (ODS epraccur).", no_args_is_help=True
)
app.add_typer(national_app, name="national-list")
console = Console()

DEMO_BALLOT = (
    Path(__file__).resolve().parent.parent / "ballots" / "delegated-commissioning-2016.toml"
)
DEMO_USER = "demo-secretariat"
# The example's extract of the national list, with one closed practice for the check to flag.
DEMO_NATIONAL_LIST = DEMO_BALLOT.parent / "riverside-epraccur.csv"


# The audit trail names whoever ran a command at the server's shell as an operator.
def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container user id with no name
        return "unknown"


OPERATOR = f"operator:{_os_user()}"


def main() -> None:
    try:
        app()
    except errors.AppError as exc:
        console.print(f"[red]{exc.name}:[/red] {escape(exc.detail)}")
        raise SystemExit(1) from None


@app.command()
def serve(host: str = "127.0.0.1", port: int = 8000, workers: int = 1) -> None:
    """Serve the API and the voter pages."""
    settings = get_settings()
    # uvicorn's own access log prints raw paths, which carry voting tokens: ours redacts them.
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=False,
        log_level=settings.log_level.lower(),
        # Applied in every worker process: LOG_FORMAT, LOG_LEVEL, the request id on every line.
        log_config=logs.dict_config(settings.log_format, settings.log_level),
        server_header=False,  # no "server: uvicorn" banner
        # Only TRUSTED_PROXIES may set the client address and scheme.
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=settings.trusted_proxies or None,
    )


@app.command()
def migrate() -> None:
    """Bring the database schema up to date."""
    run_migrations()
    console.print("Database is at the newest schema.")


@staff_app.command("add")
def staff_add(
    username: str,
    role: Annotated[
        Role, typer.Option(help="admin, secretariat, auditor or scrutineer")
    ] = Role.secretariat,
    password: Annotated[str | None, typer.Option(help="Omit to be asked for it")] = None,
) -> None:
    """Create a staff account (the first admin is made this way)."""
    if password is None:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    with session_scope() as session:
        user = staff.create(session, username=username, password=password, role=role)
        console.print(f"Created {escape(user.username)} ({user.role}).")
    if role == Role.admin:
        console.print(
            "An admin must set up two-factor sign-in (POST /api/v1/auth/totp) before anything else."
        )


@staff_app.command("revoke")
def staff_revoke(username: str) -> None:
    """End every session of an account (it can sign in again)."""
    with session_scope() as session:
        user = staff.get(session, username)
        ended = staff.end_sessions(session, user=user)
        console.print(f"Ended {ended} session(s) of {escape(user.username)}.")


@staff_app.command("reset-two-factor")
def staff_reset_two_factor(username: str) -> None:
    """Remove an account's second factor (a lost authenticator) and end its sessions."""
    with session_scope() as session:
        user = staff.reset_totp(session, username=username)
        console.print(
            f"Two-factor sign-in removed from {escape(user.username)}; they set it up again "
            "after signing in."
        )


def _load(path: Path, *, from_now: bool = False) -> int:
    definition = definitions.read_ballot_file(path)
    if from_now:
        # For a demonstration: the same ballot, open from now for fourteen days.
        opens = clock.now().replace(microsecond=0)
        definition = definition.model_copy(
            update={"opens_at": opens, "closes_at": opens + timedelta(days=14)}
        )
    rows = None
    if definition.roll:
        roll_path = path.parent / definition.roll
        if not roll_path.is_file():
            missing = [{"loc": "roll", "problem": f"no file {definition.roll} next to {path.name}"}]
            raise errors.InvalidInput(errors.describe_problems(missing), problems=missing)
        rows = roll.parse_csv(roll_path.read_text(encoding="utf-8"))
    with session_scope() as session:
        ballot = ballots.create(session, definition=definition, actor=OPERATOR)
        if rows is not None:
            ballots.replace_roll(session, ballot=ballot, rows=rows, actor=OPERATOR)
        return ballot.id


@national_app.command("import")
def national_list_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
) -> None:
    """Replace the national list with an epraccur CSV file (as NHS Digital publishes it)."""
    with session_scope() as session:
        imported = national_list.replace(session, data=file.read_bytes(), actor=OPERATOR)
        console.print(
            f"Imported {imported.practices} practices from {escape(file.name)} "
            f"(SHA-256 {imported.file_sha256})."
        )


@ballot_app.command("load")
def ballot_load(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    from_now: Annotated[
        bool, typer.Option(help="Open from now for 14 days (demonstrations)")
    ] = False,
) -> None:
    """Create a draft ballot from a TOML file (and the roll it names)."""
    ballot_id = _load(file, from_now=from_now)
    console.print(f"Loaded ballot {ballot_id} as a draft.")


@ballot_app.command("open")
def ballot_open(
    ballot_id: int,
    acknowledge_warnings: Annotated[bool, typer.Option(help="Open despite warnings")] = False,
) -> None:
    """Freeze the ballot, issue the links and write the invitations."""
    _open(ballot_id, acknowledge_warnings=acknowledge_warnings)


def _open(ballot_id: int, *, acknowledge_warnings: bool) -> None:
    with session_scope() as session, Progress(console=console) as progress:
        task = progress.add_task("Queueing invitations", total=None)
        ballots.open_ballot(
            session,
            ballot_id=ballot_id,
            acknowledge_warnings=acknowledge_warnings,
            actor=OPERATOR,
            on_progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
    console.print(f"Ballot {ballot_id} is open.")
    _send()


def _send() -> None:
    """Deliver what is due now; whatever cannot go yet stays queued for the sender."""
    with Progress(console=console) as progress:
        task = progress.add_task("Sending email", total=None)
        report = outbox.deliver_pending(
            on_progress=lambda r: progress.update(task, completed=r.sent + r.failed)
        )
    console.print(
        f"Email: {report.sent} sent, {report.failed} failed, {report.retrying} queued to retry."
    )


@mail_app.command("send")
def mail_send(
    watch: Annotated[
        bool, typer.Option(help="Keep running, as the worker beside the servers")
    ] = False,
) -> None:
    """Deliver the outbox: once, or continuously with --watch."""
    if watch:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        anyio.run(outbox.run_sender, anyio.Semaphore(1))
    else:
        _send()


@digest_app.command("send")
def digest_send(
    ballot_id: Annotated[
        int | None, typer.Option("--ballot", help="One ballot; omit for every open ballot")
    ] = None,
) -> None:
    """Queue today's digest to the scrutineers (once a day per ballot) and send the mail."""
    if ballot_id is None:
        done = announcements.queue_digests()
        for sentence in done:
            console.print(escape(sentence))
        if not done:
            console.print(
                "No digest was due: each open ballot with a scrutineer's address had today's."
            )
    else:
        with session_scope() as session:
            queued = announcements.queue_digest(session, ballot_id=ballot_id, actor=OPERATOR)
        console.print(
            f"Queued today's digest for ballot {ballot_id}."
            if queued
            else f"Today's digest for ballot {ballot_id} was already queued; none is sent twice."
        )
    _send()


@ballot_app.command("reissue")
def ballot_reissue(ballot_id: int, ods_code: str) -> None:
    """Revoke a practice's links and send it new ones."""
    with session_scope() as session:
        ballot = ballots.get(session, ballot_id)
        practice = roll.reissue(session, ballot=ballot, ods_code=ods_code, actor=OPERATOR)
        console.print(f"Revoked the links of {escape(practice.name)}; new ones are queued.")
    _send()


@ballot_app.command("remind")
def ballot_remind(ballot_id: int) -> None:
    """Email every practice that has not voted."""
    with session_scope() as session:
        count = roll.remind(session, ballot=ballots.get(session, ballot_id), actor=OPERATOR)
    console.print(f"Reminders queued for {count} practices.")
    _send()


@ballot_app.command("deliveries")
def ballot_deliveries(ballot_id: int) -> None:
    """Every email of the ballot and what became of it."""
    table = Table("practice", "to", "kind", "status", "attempts", "last error")
    with session_scope() as session:
        for practice, m in outbox.deliveries(session, ballot=ballots.get(session, ballot_id)):
            table.add_row(
                practice.ods_code, m.to_address, m.kind, m.status, str(m.attempts),
                escape(m.last_error or ""),
            )  # fmt: skip
    console.print(table)


@ballot_app.command("close")
def ballot_close(ballot_id: int) -> None:
    """Stop voting."""
    with session_scope() as session:
        ballots.close_ballot(session, ballot_id=ballot_id, actor=OPERATOR)
    console.print(f"Ballot {ballot_id} is closed.")


@ballot_app.command("publish")
def ballot_publish(ballot_id: int) -> None:
    """Count a closed ballot and publish the result."""
    with session_scope() as session:
        ballot = ballots.publish(session, ballot_id=ballot_id, actor=OPERATOR)
        assert ballot.result is not None  # noqa: S101
        for question in ballot.result["questions"]:
            console.print(f"{question['question_id']}: {question['outcome']}")


@ballot_app.command("status")
def ballot_status(ballot_id: int) -> None:
    """Status and turnout (never how anyone voted)."""
    with session_scope() as session:
        ballot = ballots.get(session, ballot_id)
        eligible, voted = ballots.turnout_figures(session, ballot=ballot)
        console.print(f"Ballot {ballot.id}: {escape(ballot.title)}")
        console.print(f"  status:  {ballot.status}")
        console.print(f"  opens:   {clock.london(ballot.opens_at)}")
        console.print(f"  closes:  {clock.london(ballot.closes_at)}")
        console.print(f"  turnout: {voted} of {eligible} practices")
        raised = len(disputes.list_for(session, ballot=ballot))
        if raised:
            console.print(f"  disputes: {raised} (`mandate ballot disputes {ballot.id}`)")
        proposal = voiding.pending(session, ballot=ballot)
        if proposal is not None:
            # Voiding is never done from here: it takes the secretariat and a scrutineer (API).
            console.print(
                f"  void proposed by {proposal.proposed_by}, waiting for the scrutineer: "
                f"{escape(proposal.reason)}"
            )


@ballot_app.command("disputes")
def ballot_disputes(ballot_id: int) -> None:
    """Every dispute recorded for the ballot (never how anyone voted)."""
    table = Table("raised", "practice", "came in", "claims not voted", "text")
    with session_scope() as session:
        for d in disputes.list_for(session, ballot=ballots.get(session, ballot_id)):
            table.add_row(
                clock.london(d.raised_at), d.ods_code or "-", d.channel,
                "yes" if d.claims_not_voted else "no", escape(d.text),
            )  # fmt: skip
    console.print(table)


def _sample_links(limit: int) -> list[str]:
    """Voting links from the invitations in the maildir (the server keeps only their hashes)."""
    maildir = get_settings().maildir
    if maildir is None or not maildir.exists():
        return []
    pattern = re.compile(re.escape(get_settings().base_url) + r"/vote/[A-Za-z0-9_-]+")
    links: list[str] = []
    for message in mailbox.Maildir(maildir, create=False):
        links += pattern.findall(mail.plain_text(message))
    return sorted(set(links))[:limit]


tally_app = typer.Typer(
    help="Tally keys: the box is sealed to one until close.", no_args_is_help=True
)
app.add_typer(tally_app, name="tally-key")


def write_shares(directory: Path, shares: list[tally_key.Share]) -> list[Path]:
    """One file per holder, readable by its owner only."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for share in shares:
        path = directory / f"tally-share-{share.index}-of-{share.holders}.json"
        # Created 0600 from the start, so the share is never readable by others, even briefly.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(share.as_json(), out, indent=2)
            out.write("\n")
        written.append(path)
    return written


@tally_app.command("new")
def tally_key_new(
    out: Annotated[Path, typer.Option(help="A new directory for the share files")],
    holders: Annotated[int, typer.Option(help="How many people hold a share")] = 3,
    threshold: Annotated[int, typer.Option(help="How many shares open the box")] = 2,
) -> None:
    """Make a tally key on this machine: shares of the private key, and its public key."""
    if out.exists() and any(out.iterdir()):
        raise errors.InvalidInput(f"{out} is not empty; give a new directory for the shares.")
    public, shares = tally_key.new_key(holders=holders, threshold=threshold)
    for path in write_shares(out, shares):
        console.print(f"Wrote {path} (give it to one holder; readable by you only)")
    console.print(
        f"{threshold} of {holders} shares open the box. Public key (set it on the ballot):"
    )
    console.print(public)


@tally_app.command("set")
def tally_key_set(
    ballot_id: int,
    public_key: Annotated[str, typer.Option(help="The line `mandate tally-key new` printed")],
    holder: Annotated[list[str] | None, typer.Option(help="A key holder (repeat)")] = None,
    threshold: Annotated[int | None, typer.Option(help="How many shares open the box")] = None,
    holders: Annotated[int | None, typer.Option(help="How many hold a share, if not named")] = None,
) -> None:
    """Set the public key a draft's ballots are sealed to."""
    with session_scope() as session:
        ballot = ballots.get(session, ballot_id, lock="update")
        sealed_box.set_tally_key(
            session, ballot=ballot, public_key=public_key, holders=holder, threshold=threshold,
            holder_count=holders, actor=OPERATOR,
        )  # fmt: skip
    console.print(f"Ballot {ballot_id} will be sealed to that key.")


def read_shares(paths: list[Path]) -> list[tally_key.Share]:
    shares = []
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise errors.InvalidInput(f"{path} cannot be read ({exc}).") from None
        shares.append(tally_key.parse_share(text, name=str(path)))
    return shares


@app.command("tally-open")
def tally_open(
    ballot_id: int,
    share: Annotated[list[Path], typer.Option(help="A holder's share file (repeat)")],
) -> None:
    """Open the sealed box of a closed ballot with enough holders' shares."""
    shares = read_shares(share)
    with session_scope() as session:
        sealed_box.open_box(session, ballot_id=ballot_id, shares=shares, actor=OPERATOR)
        cast = len(ballots.ballot_box(session, ballot=ballots.get(session, ballot_id)))
    console.print(f"Opened the box of ballot {ballot_id}: {cast} ballots. It can be published.")


@app.command()
def demo(file: Path = DEMO_BALLOT) -> None:
    """Set up a demonstration: migrate, load and open the example ballot, a demo account."""
    run_migrations()
    definition = definitions.read_ballot_file(file)
    with session_scope() as session:
        ballot_id = session.scalar(
            select(Ballot.id).where(Ballot.reference == definition.reference)
        )
    if ballot_id is None:
        ballot_id = _load(file, from_now=True)
        console.print(f"Loaded {file} as ballot {ballot_id}.")
        # A real ballot's holders make the key on their own machines; the demonstration keeps
        # the shares beside its database so the box can be opened after close.
        public, shares = tally_key.new_key(holders=3, threshold=2)
        directory = get_settings().data_dir / f"tally-shares-{ballot_id}"
        write_shares(directory, shares)
        with session_scope() as session:
            sealed_box.set_tally_key(
                session, ballot=ballots.get(session, ballot_id, lock="update"),
                public_key=public, holders=None, threshold=2, holder_count=3, actor=OPERATOR,
            )  # fmt: skip
        console.print(f"Tally key shares (2 of 3 open the box) are in {directory}/.")
    with session_scope() as session:
        if national_list.latest_import(session) is None and DEMO_NATIONAL_LIST.is_file():
            national_list.replace(session, data=DEMO_NATIONAL_LIST.read_bytes(), actor=OPERATOR)
            console.print(f"Imported the national list extract {DEMO_NATIONAL_LIST.name}.")
    with session_scope() as session:
        ballot = ballots.get(session, ballot_id)
        _demo_account(session, DEMO_USER, Role.secretariat)
        scrutineer = _demo_account(session, scrutiny.scrutineers(ballot)[0], Role.scrutineer)
        status = ballot.status
        if status == BallotStatus.draft and ballot.approved_hash is None:
            # The demonstration's scrutineer approves the example as it stands.
            frozen = scrutiny.frozen_hash(session, ballot=ballot)
            scrutiny.approve(session, ballot=ballot, user=scrutineer, frozen=frozen)
    if status == BallotStatus.draft:
        _open(ballot_id, acknowledge_warnings=True)
    console.print(f"Invitations are in {get_settings().maildir}/new (one .eml per address).")
    console.print(f"Staff console: {get_settings().base_url.rstrip('/')}/console")
    console.print("Sample voter links:")
    for link in _sample_links(3):
        console.print(f"  {link}")


def _demo_account(session: Session, username: str, role: Role) -> StaffUser:
    user = session.scalar(select(StaffUser).where(StaffUser.username == username))
    if user is not None:
        console.print(f"Demo {role} account {username} exists (its password was shown once).")
        return user
    password = secrets.token_urlsafe(12)
    console.print(f"Demo {role} account: {username} / {password}  (shown once; keep it)")
    return staff.create(session, username=username, password=password, role=role)


key_app = typer.Typer(help="The service's signing key.", no_args_is_help=True)
app.add_typer(key_app, name="key")


@key_app.command("show")
def key_show() -> None:
    """The public key that signs receipts and bundles, and every key used before it."""
    with session_scope() as session:
        signing.register(session)
        current = signing.public_b64()
        console.print(f"Current public key (Ed25519): {current}")
        console.print(f"  key id:      {signing.key_id(current)}")
        console.print(f"  fingerprint: {proof.key_fingerprint(current)}")
        for key in signing.known_keys(session):
            if key.public_key != current:
                console.print(
                    f"Earlier key {key.key_id}: {key.public_key} "
                    f"(first used {clock.london(key.first_used_at)})"
                )


@key_app.command("rotate")
def key_rotate() -> None:
    """Sign with a new key from now on; the old public key stays listed for old bundles."""
    with session_scope() as session:
        signing.register(session)
        try:
            public = signing.rotate()
        except ValueError as exc:
            raise errors.InvalidInput(str(exc)) from None
        signing.register(session)
    console.print(f"New public key: {public}  (publish it where practices and auditors look)")


@app.command("evidence")
def evidence_command(
    ballot_id: int, output: Annotated[Path, typer.Option("-o", "--output")]
) -> None:
    """Write the evidence bundle (zip) of a published ballot."""
    with session_scope() as session:
        content = evidence.bundle(session, ballot=ballots.get(session, ballot_id))
    output.write_bytes(content)
    console.print(f"Wrote {output} ({len(content)} bytes).")


def _public_key_text(value: str) -> str:
    """A public key given as base64, as a file holding it, or as a PEM file."""
    path = Path(value)
    text = path.read_text().strip() if path.is_file() else value.strip()
    if text.startswith("-----BEGIN PUBLIC KEY"):
        return proof.public_key_from_pem(text)
    return text


@app.command()
def verify(
    bundle: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    key: Annotated[
        str | None,
        typer.Option(help="The service's public key (base64 or a file), from outside the bundle"),
    ] = None,
    report: Annotated[Path | None, typer.Option(help="Also write a printable HTML report")] = None,
    anchor: Annotated[
        list[str] | None,
        typer.Option(
            help="A hash kept from an email (an audit-chain head, a ballot-box root or sealed "
            "hash) that must be in the bundle; repeat for several"
        ),
    ] = None,
) -> None:
    """Check an evidence bundle offline; exit 0 only if every check passes."""
    checks = verification.verify(
        bundle, key=_public_key_text(key) if key else None, anchors=anchor or ()
    )
    for check in checks:
        mark = "[green]✓[/green]" if check.ok else "[red]✗[/red]"
        console.print(f"{mark} {check.name}: {escape(check.detail)}")
    if report is not None:
        report.write_text(verification.report_html(bundle, checks))
        console.print(f"Report written to {report}.")
    passed = all(c.ok for c in checks)
    console.print("All checks passed." if passed else "The bundle does NOT verify.")
    raise typer.Exit(0 if passed else 1)


@app.command()
def keygen(output: Annotated[Path, typer.Argument(help="Where to write the private key")]) -> None:
    """Make an attester's own key pair; register the public key, keep the file to yourself."""
    if output.exists():
        raise errors.Conflict(f"{output} exists; choose another file name.")
    public = signing.public_b64(signing.write_new_key(output))
    console.print(f"Private key written to {output} (readable by you only).")
    console.print(f"Public key to register: {public}")
    console.print(f"Fingerprint: {proof.key_fingerprint(public)}")


@app.command()
def attest(
    bundle: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    key: Annotated[Path, typer.Option(help="Your private key file (from mandate keygen)")],
    service_key: Annotated[str, typer.Option(help="The service's public key, independently")],
    name: Annotated[str, typer.Option()],
    capacity: Annotated[str, typer.Option(help='e.g. "Lay chair, Audit Committee"')],
    statement: Annotated[str, typer.Option()] = (
        "I have verified this evidence bundle with mandate verify and the recount matches the "
        "declared result."
    ),
    output: Annotated[Path, typer.Option("-o", "--output")] = Path("attestation.json"),
) -> None:
    """Verify a bundle, then countersign its fingerprint with your own key (offline)."""
    checks = verification.verify(bundle, key=_public_key_text(service_key))
    failed = [c for c in checks if not c.ok]
    if failed:
        for check in failed:
            console.print(f"[red]✗[/red] {check.name}: {escape(check.detail)}")
        raise errors.Conflict("The bundle does not verify, so it was not countersigned.")
    fingerprint = verification.read(bundle).manifest["fingerprint"]
    private = signing.read_key_file(key)
    message = proof.attestation_message(
        fingerprint=fingerprint, name=name, capacity=capacity, statement=statement
    )
    signed = {
        "name": name,
        "capacity": capacity,
        "statement": statement,
        "fingerprint": fingerprint,
        "signature": base64.b64encode(private.sign(message)).decode(),
    }
    output.write_text(json.dumps(signed, indent=2) + "\n")
    console.print(f"Countersignature over {fingerprint} written to {output}.")
    console.print("Send it with POST /api/v1/ballots/{id}/attestations.")


@app.command("export-ballot")
def export_ballot(ballot_id: int, output: Annotated[Path, typer.Option("-o", "--output")]) -> None:
    """Write a closed, published or draft ballot to a file (open ballots are refused)."""
    with session_scope() as session:
        exported = transfer.export(session, ballot_id=ballot_id)
    output.write_text(json.dumps(exported, indent=1, sort_keys=True) + "\n")
    console.print(f"Wrote ballot {ballot_id} to {output}.")


@app.command("import-ballot")
def import_ballot(file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)]) -> None:
    """Recreate an exported ballot in this database (with the same SECRET_KEY its links work)."""
    try:
        data = json.loads(file.read_text())
    except (ValueError, UnicodeDecodeError):
        raise errors.InvalidInput(f"{file} is not a JSON ballot export.") from None
    with session_scope() as session:
        ballot_id = transfer.import_ballot(session, data)
    console.print(f"Imported {file} as ballot {ballot_id}.")
