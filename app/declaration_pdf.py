"""The declaration of result as an A4 PDF (fpdf2, core fonts), the same words as the HTML."""

import unicodedata
from collections.abc import Sequence

from fpdf import FPDF, FontFace
from fpdf.enums import XPos, YPos

from app.declaration import (
    MET,
    NOT_MET,
    NOT_RECORDED,
    RECORDED,
    VERIFY_COMMAND,
    Contents,
    Facts,
    contents,
    percent,
)

_LATIN1 = str.maketrans(
    {
        "\u2010": "-",
        "\u2011": "-",
        "\u2012": "-",
        "\u2013": "-",
        "\u2014": "-",
        "\u2212": "-",
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": ",",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u2026": "...",
        "\u2022": "\u00b7",
        "\u2713": "v",
        "\u2714": "v",
        "\u2717": "x",
        "\u2718": "x",
        "\u2265": ">=",
        "\u2264": "<=",
        "\u00a0": " ",
        "\u2009": " ",
        "\u202f": " ",
        "\u200b": "",
    }
)
_BLUE = (0, 94, 184)
_GREY = (216, 221, 224)
_TEXT = (33, 43, 50)
_STATE_COLOURS = {MET: (0, 127, 59), NOT_MET: (213, 40, 27), NOT_RECORDED: (76, 98, 114)}
_LINE = 4.0  # mm per line of 9pt text


def latin1(text: str) -> str:
    """Text the PDF core fonts can draw: common punctuation mapped, anything else "?"."""
    text = unicodedata.normalize("NFC", text).translate(_LATIN1)
    return text.encode("latin-1", "replace").decode("latin-1")


class _Document(FPDF):
    """An A4 page with the declaration's footer on every page."""

    def __init__(self, footer: str) -> None:
        super().__init__(orientation="portrait", unit="mm", format="A4")
        self.footer_text = latin1(footer)
        self.set_margins(left=16, top=14, right=16)
        self.set_auto_page_break(auto=True, margin=15)

    def footer(self) -> None:
        self.set_y(-11)
        self.set_font("helvetica", size=7.5)
        self.set_text_color(*_STATE_COLOURS[NOT_RECORDED])
        self.cell(0, 4, self.footer_text)
        self.set_x(self.l_margin)
        self.cell(0, 4, f"Page {self.page_no()} of {{nb}}", align="R")


def render_pdf(facts: Facts) -> bytes:
    """The declaration on one or two A4 pages; the same facts give the same bytes."""
    c = contents(facts)
    pdf = _Document(c.footer)
    # Stamped with the publication time rather than now, so a rebuild is byte-identical.
    pdf.set_creation_date(facts.published_at)
    pdf.set_title(latin1(f"Declaration of result: {c.title}"))
    pdf.set_author(latin1(facts.organisation_name))
    pdf.set_creator(latin1(f"Mandate {facts.software_version}"))
    pdf.set_lang("en-GB")
    pdf.add_page()
    _pdf_result(pdf, c)
    _pdf_questions(pdf, c)
    _pdf_charts(pdf, c)
    _pdf_evidence(pdf, c)
    _pdf_signatures(pdf, c)
    return bytes(pdf.output())


def _pdf_result(pdf: FPDF, c: Contents) -> None:
    _text(pdf, "Declaration of result", size=17, style="B", colour=_BLUE, height=8)
    _text(pdf, c.title, size=11.5, style="B", height=5.5)
    _text(pdf, c.organisation, size=10, height=5.5)
    if c.voided:
        pdf.ln(1.5)
        _text(pdf, c.voided, style="B", size=10, colour=_STATE_COLOURS[NOT_MET], height=4.8)
    pdf.ln(1.5)
    rows = [
        ("Ballot period", c.period + (f". {c.extension}" if c.extension else "")),
        ("Ballot box", c.ballot_box),
        ("Eligible practices", str(c.eligible)),
        ("Ballots cast", str(c.cast)),
        ("Turnout", c.turnout),
        ("Result published", c.published),
        ("Rules set by", f"{c.constitution_ref} ({RECORDED})"),
    ]
    if c.weighting:
        rows.append(("Weighting", c.weighting))
    _table(pdf, rows, widths=(1, 3.6), headings=False)
    pdf.ln(2)
    _text(pdf, c.membership, style="B", size=10, height=4.8)
    _text(pdf, c.governing_body)


def _pdf_questions(pdf: FPDF, c: Contents) -> None:
    for q in c.questions:
        _heading(pdf, f"Question {q.number}: {q.outcome.lower()}")
        _text(pdf, q.text, style="I")
        pdf.ln(1)
        headings = ["", *q.options, "Ballots cast", "Eligible"]
        widths = (2.2, *(1.0 for _ in q.options), 1.3, 1.1)
        _table(pdf, [headings, *q.rows], widths=widths, align="RIGHT")
        pdf.ln(1)
        _text(pdf, f"{q.bar} {q.quorum} {q.threshold}")
        if q.localities:
            _text(pdf, f"By locality: {'; '.join(q.localities)}.")
        _text(pdf, f"Outcome: {q.outcome}", style="B")
    _heading(pdf, "For NHS England's checklist")
    _text(pdf, c.summary)


def _pdf_charts(pdf: FPDF, c: Contents) -> None:
    rows = max(len(c.by_locality), 1)
    height = max(42.0, 12 + 6.0 * rows)
    _heading(pdf, "Turnout", keep=height)
    top, half = pdf.get_y(), (pdf.epw - 8) / 2
    _chart_by_day(pdf, c, x=pdf.l_margin, y=top, width=half)
    _chart_by_locality(pdf, c, x=pdf.l_margin + half + 8, y=top, width=half)
    pdf.set_xy(pdf.l_margin, top + height)


def _chart_by_day(pdf: FPDF, c: Contents, *, x: float, y: float, width: float) -> None:
    pdf.set_xy(x, y)
    _label(pdf, "Practices voted, running total by day", width, style="B")
    top, height = y + 8, 26.0
    scale = height / max(c.eligible, 1)
    pdf.set_draw_color(*_TEXT)
    pdf.set_line_width(0.2)
    pdf.line(x, top + height, x + width, top + height)
    pdf.set_dash_pattern(dash=0.8, gap=0.8)
    pdf.line(x, top, x + width, top)
    pdf.set_dash_pattern()
    slot = width / max(len(c.by_day), 1)
    pdf.set_fill_color(*_BLUE)
    for n, (_, voted) in enumerate(c.by_day):
        if voted:
            pdf.rect(
                x + n * slot + slot * 0.15,
                top + height - voted * scale,
                slot * 0.7,
                voted * scale,
                style="F",
            )
    pdf.set_xy(x, top - 4)
    _label(pdf, f"{c.eligible} eligible", width, align="R")
    if c.by_day:
        pdf.set_xy(x, top + height + 0.5)
        _label(pdf, c.by_day[0][0], width)
        pdf.set_xy(x, top + height + 0.5)
        _label(pdf, f"{c.by_day[-1][0]}: {c.by_day[-1][1]} voted", width, align="R")


def _chart_by_locality(pdf: FPDF, c: Contents, *, x: float, y: float, width: float) -> None:
    pdf.set_xy(x, y)
    _label(pdf, "Turnout by locality (voted of eligible)", width, style="B")
    label_width, figure_width = 24.0, 25.0
    bar_width = width - label_width - figure_width
    for n, (locality, voted, eligible) in enumerate(c.by_locality):
        row = y + 8 + 6 * n
        pdf.set_xy(x, row)
        _label(pdf, locality, label_width)
        pdf.set_fill_color(*_GREY)
        pdf.rect(x + label_width, row + 0.5, bar_width, 3.5, style="F")
        pdf.set_fill_color(*_BLUE)
        if voted:
            pdf.rect(
                x + label_width, row + 0.5, bar_width * voted / max(eligible, 1), 3.5, style="F"
            )
        pdf.set_xy(x + width - figure_width, row)
        _label(pdf, f"{voted} of {eligible} ({percent(voted, eligible)})", figure_width, align="R")


def _pdf_evidence(pdf: FPDF, c: Contents) -> None:
    # Keep the checklist in one piece: it is the part a reader looks for.
    _heading(pdf, "Readiness against the GPC key points", keep=8 + 10 * len(c.checklist))
    rows = [("Key point", "State", "Evidence")]
    rows += [(check.point, check.state, check.evidence) for check in c.checklist]
    _table(pdf, rows, widths=(1.5, 0.8, 4.2), states=True)
    _heading(pdf, f"Consultation timeline ({RECORDED})")
    if c.consultations:
        _table(pdf, [("Date", "Body", "What happened"), *c.consultations], widths=(1.1, 1.1, 4.3))
    else:
        _text(pdf, "No consultations are recorded.")
    _heading(pdf, "The roll: checked and corrected")
    _text(pdf, c.roll_check_note)
    for line in c.roll_findings:
        _text(pdf, f"\u2022 {line}")
    _text(pdf, c.corrections_note)
    for line in c.corrections:
        _text(pdf, f"\u2022 {line}")
    _heading(pdf, "Invitations never confirmed delivered")
    _text(pdf, c.undelivered_note)
    for line in c.undelivered:
        _text(pdf, f"\u2022 {line}")
    _heading(pdf, "Disputes")
    for line in c.disputes:
        _text(pdf, f"\u2022 {line}")
    _text(pdf, c.disputes_effect)
    _heading(pdf, "Secrecy, challenges and countersignatures")
    for paragraph in [c.receipt_mode, c.challenge, *c.attestations]:
        _text(pdf, paragraph)
        pdf.ln(1)
    _heading(pdf, "How to check this declaration")
    _text(pdf, "Fingerprint of the evidence bundle:")
    _text(pdf, c.fingerprint, font="courier", style="B")
    for label, value in c.commitments:
        _text(pdf, label)
        _text(pdf, value, font="courier", style="B")
    pdf.ln(1)
    _text(pdf, "Check the bundle offline with:")
    _text(pdf, VERIFY_COMMAND, font="courier")
    pdf.ln(1)
    _text(pdf, c.key_advice)


def _pdf_signatures(pdf: FPDF, c: Contents) -> None:
    _heading(pdf, "Signatures", keep=32)
    top, half = pdf.get_y() + 1, (pdf.epw - 10) / 2
    pdf.set_draw_color(*_TEXT)
    for n, (role, name) in enumerate(c.signatories):
        x = pdf.l_margin + n * (half + 10)
        pdf.set_xy(x, top)
        _label(pdf, role, half, style="B")
        pdf.set_xy(x, top + 5)
        # A name not given in the ballot file is written in by hand, like the signature.
        _label(pdf, f"Name: {name}" if name else "", half)
        captions = ["Signature", "Date"] if name else ["Name", "Signature", "Date"]
        for m, caption in enumerate(captions):
            line_y = top + (17 if name else 12) + 9 * m
            pdf.line(x + 18, line_y, x + half, line_y)
            pdf.set_xy(x, line_y - 4)
            _label(pdf, caption, 18)
    pdf.set_xy(pdf.l_margin, top + 32)


def _heading(pdf: FPDF, text: str, *, keep: float = 16) -> None:
    """A section heading, moved to the next page rather than left alone at a page's foot."""
    if pdf.will_page_break(keep + 8):
        pdf.add_page()
    pdf.ln(2.5)
    _text(pdf, text, size=11, style="B", colour=_BLUE, height=5.5)


def _text(
    pdf: FPDF,
    text: str,
    *,
    size: float = 9,
    style: str = "",
    colour: tuple[int, int, int] = _TEXT,
    height: float = _LINE,
    font: str = "helvetica",
) -> None:
    pdf.set_font(font, style=style, size=size)
    pdf.set_text_color(*colour)
    pdf.multi_cell(0, height, latin1(text), align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def _label(pdf: FPDF, text: str, width: float, *, style: str = "", align: str = "L") -> None:
    pdf.set_font("helvetica", style=style, size=8)
    pdf.set_text_color(*_TEXT)
    pdf.cell(width, 4, latin1(text), align=align)


def _table(
    pdf: FPDF,
    rows: Sequence[Sequence[str]],
    *,
    widths: Sequence[float],
    headings: bool = True,
    align: str = "LEFT",
    states: bool = False,
) -> None:
    """A table with light rules; the second column coloured by state when `states`."""
    pdf.set_font("helvetica", size=8.5)
    pdf.set_text_color(*_TEXT)
    pdf.set_draw_color(*_GREY)
    # Table cells are painted with the current fill colour, which the charts leave blue.
    pdf.set_fill_color(255)
    bold = FontFace(emphasis="BOLD")
    with pdf.table(
        col_widths=tuple(widths),
        first_row_as_headings=headings,
        headings_style=FontFace(emphasis="BOLD", color=_TEXT, fill_color=(240, 244, 245)),
        borders_layout="HORIZONTAL_LINES",
        text_align=align,
        v_align="TOP",
        line_height=3.9,
        padding=(0.9, 1.2),
    ) as table:
        for row in rows:
            cells = table.row()
            for n, text in enumerate(row):
                style = None
                if n == 0 and not headings:
                    style = bold
                elif states and n == 1 and text in _STATE_COLOURS:
                    style = FontFace(emphasis="BOLD", color=_STATE_COLOURS[text])
                cells.cell(latin1(text), style=style, align="LEFT" if n == 0 else None)
