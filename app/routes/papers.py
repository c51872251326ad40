"""The papers-only link: the questions, the documents and the dates, with no power to vote.

Each invitation carries it for the partners who must agree the practice's vote. It names the
ballot, not a practice, and is signed so it cannot be guessed from a ballot's number.
"""

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse

from app import ballots, crypto, errors, mail
from app.deps import SessionDep
from app.models import Ballot
from app.routes import templates

router = APIRouter(prefix="/papers/{signed}", include_in_schema=False)


class PapersLinkInvalid(errors.NotFound):
    pass


def _ballot(signed: str, session: SessionDep) -> Ballot:
    try:
        ballot_id = crypto.load_signed(
            mail.PAPERS, signed, max_age_seconds=mail.PAPERS_MAX_AGE_SECONDS
        )
    except crypto.SignedValueInvalid:
        raise PapersLinkInvalid(
            "This link to the ballot papers is not valid: use the whole link from the email."
        ) from None
    if not isinstance(ballot_id, int):
        raise PapersLinkInvalid("This link to the ballot papers is not valid.")
    return ballots.get(session, ballot_id)


PapersBallot = Annotated[Ballot, Depends(_ballot)]


@router.api_route("", methods=["GET", "HEAD"], response_class=HTMLResponse)
def papers(signed: str, ballot: PapersBallot, request: Request) -> HTMLResponse:
    response = templates.TemplateResponse(
        request, "papers.html", {"ballot": ballot, "signed": signed}
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get("/documents/{position}")
def document(position: int, ballot: PapersBallot, session: SessionDep) -> Response:
    found = ballots.document(session, ballot=ballot, position=position)
    return Response(
        found.content,
        media_type=found.media_type,
        headers={"Content-Disposition": f'inline; filename="{found.filename}"'},
    )
