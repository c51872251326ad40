"""The count and its rules: quorum, thresholds, weighting and localities (pure, no I/O)."""

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    WithJsonSchema,
    field_validator,
    model_validator,
)


class Weighting(StrEnum):
    equal = "equal"
    per_patients = "per_patients"


class Basis(StrEnum):
    practices = "practices"
    votes = "votes"


class ThresholdBasis(StrEnum):
    practices = "practices"
    votes = "votes"
    both = "both"


class Base(StrEnum):
    for_against = "for_against"
    cast = "cast"
    eligible = "eligible"


class Comparison(StrEnum):
    exceed = "exceed"
    reach = "reach"


class Preset(StrEnum):
    simple_majority = "simple_majority"
    two_thirds = "two_thirds"
    majority_of_eligible = "majority_of_eligible"


class Outcome(StrEnum):
    carried = "carried"
    not_carried = "not_carried"
    quorum_not_met = "quorum_not_met"


# Bounded digits: a rule needs no more, and int() refuses very long numbers with its own message.
_FRACTION_TEXT = re.compile(r"[+-]?(\d{1,9}/\d{1,9}|\d{1,9}(\.\d{1,9})?|\.\d{1,9})")


def parse_fraction(value: object) -> Fraction:
    """A Fraction from "2/3", "0.5", 0.5 or 1; ValueError with a sentence otherwise."""
    if isinstance(value, Fraction):
        return value
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        # Through the decimal text, so 0.1 means one tenth rather than the nearest binary float.
        value = str(value)
    if isinstance(value, str):
        text = "".join(value.split())
        if _FRACTION_TEXT.fullmatch(text):
            try:
                return Fraction(text)
            except ZeroDivisionError:
                raise ValueError("must not have 0 as the bottom of the fraction") from None
    raise ValueError('must be a fraction such as "1/2" or "2/3", or a decimal such as "0.5"')


# Serialised as text ("2/3") so a stored or published rule round-trips exactly.
_FRACTION_SCHEMA = {"anyOf": [{"type": "string"}, {"type": "number"}], "examples": ["2/3"]}
Frac = Annotated[
    Fraction,
    PlainValidator(parse_fraction),
    PlainSerializer(str, return_type=str),
    WithJsonSchema(_FRACTION_SCHEMA),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Quorum(_Model):
    fraction: Frac
    basis: Basis = Basis.practices

    @field_validator("fraction")
    @classmethod
    def _in_range(cls, fraction: Fraction) -> Fraction:
        if not 0 <= fraction <= 1:
            raise ValueError("must be between 0 and 1")
        return fraction


class Threshold(_Model):
    fraction: Frac
    comparison: Comparison = Comparison.exceed
    base: Base = Base.for_against
    basis: ThresholdBasis = ThresholdBasis.practices

    @field_validator("fraction")
    @classmethod
    def _in_range(cls, fraction: Fraction) -> Fraction:
        if not 0 < fraction <= 1:
            raise ValueError("must be more than 0 and at most 1")
        return fraction


class QuestionRules(_Model):
    quorum: Quorum | None = None
    threshold: Threshold | None = None
    every_locality: bool | None = None


class ResolvedRules(_Model):
    quorum: Quorum | None
    threshold: Threshold
    every_locality: bool


PRESETS = {
    Preset.simple_majority: Threshold(fraction=Fraction(1, 2)),
    Preset.two_thirds: Threshold(fraction=Fraction(2, 3), comparison=Comparison.reach),
    Preset.majority_of_eligible: Threshold(fraction=Fraction(1, 2), base=Base.eligible),
}
_WEIGHTING_FIELDS = ("patients_per_vote", "list_size_source", "list_size_date")


class Rules(_Model):
    preset: Preset | None = None
    constitution_ref: str
    weighting: Weighting = Weighting.equal
    patients_per_vote: int | None = Field(default=None, gt=0)
    list_size_source: str | None = None
    list_size_date: date | None = None
    quorum: Quorum | None = None
    threshold: Threshold | None = None
    every_locality: bool = False

    @field_validator("constitution_ref", "list_size_source")
    @classmethod
    def _not_blank(cls, text: str | None) -> str | None:
        if text is not None and not text.strip():
            raise ValueError("must not be blank")
        return text.strip() if text is not None else None

    @model_validator(mode="after")
    def _weighting_is_complete(self) -> "Rules":
        given = [name for name in _WEIGHTING_FIELDS if getattr(self, name) is not None]
        if self.weighting is Weighting.per_patients:
            missing = [name for name in _WEIGHTING_FIELDS if name not in given]
            if missing:
                raise ValueError(
                    f'weighting "per_patients" also needs {", ".join(missing)}: votes per '
                    "registered patients, and where and when the list sizes were published"
                )
        elif given:
            names = ", ".join(given)
            raise ValueError(
                f'{names} only matter when weighting is "per_patients": set that weighting, '
                f"or remove {names}"
            )
        return self

    def for_question(self, override: QuestionRules | None) -> ResolvedRules:
        """The rules a question is counted under: its own where set, else the ballot's."""
        own = override or QuestionRules()
        # An explicit threshold beats the preset; no preset at all means a simple majority.
        ballot_threshold = self.threshold or PRESETS[self.preset or Preset.simple_majority]
        return ResolvedRules(
            quorum=own.quorum if own.quorum is not None else self.quorum,
            threshold=own.threshold if own.threshold is not None else ballot_threshold,
            every_locality=(
                own.every_locality if own.every_locality is not None else self.every_locality
            ),
        )

    def votes_for(self, list_size: int) -> int:
        """The votes a practice with this list size holds: one vote per N patients, minimum 1."""
        if self.weighting is Weighting.equal or self.patients_per_vote is None:
            return 1
        return max(1, list_size // self.patients_per_vote)

    def describe(self, resolved: ResolvedRules) -> str:
        """One sentence stating the bar a question must clear."""
        threshold, quorum = resolved.threshold, resolved.quorum
        verb = {Basis.practices: "vote", Basis.votes: "are"}
        text = "Carried if " + ", and ".join(
            f"{_bar(threshold)} of {_BASE_NAMES[basis][threshold.base]} {verb[basis]} For"
            for basis in _bases(threshold.basis)
        )
        if _lead_is_extra(threshold):
            text += ", with more For than Against"
        if resolved.every_locality:
            text += ", both overall and in every locality"
        if quorum is None:
            return text + "; no quorum."
        must = "vote" if quorum.basis is Basis.practices else "be cast"
        electorate = _BASE_NAMES[quorum.basis][Base.eligible]
        return text + f"; quorum: at least {quorum.fraction} of {electorate} must {must}."

    def describe_abstain(self, resolved: ResolvedRules) -> str:
        """One sentence telling a voter what Abstain does under these rules."""
        threshold = resolved.threshold
        start = "Abstain counts towards the quorum" if resolved.quorum else "Abstain is counted"
        if threshold.base is Base.for_against or (
            threshold.base is Base.eligible and _lead_is_extra(threshold)
        ):
            return f"{start} but not for or against the proposal."
        basis = Basis.votes if threshold.basis is ThresholdBasis.votes else Basis.practices
        whom = _BASE_NAMES[basis][threshold.base]
        needs = f"the proposal needs {_bar(threshold)} of {whom} to be For"
        if _lead_is_extra(threshold):
            return (
                f"{start} and, because {needs}, raises the number of For votes needed, but it "
                "is not a vote Against."
            )
        return (
            f"{start}, but because {needs}, abstaining has the same effect on the result as "
            "voting Against."
        )


def _bar(threshold: Threshold) -> str:
    return f"{_COMPARED[threshold.comparison]} {threshold.fraction}"


def _lead_is_extra(threshold: Threshold) -> bool:
    """Whether "more For than Against" is a condition the bar itself does not already imply."""
    half = Fraction(1, 2)
    return threshold.fraction < half or (
        threshold.fraction == half and threshold.comparison is Comparison.reach
    )


_COMPARED = {Comparison.exceed: "more than", Comparison.reach: "at least"}
_BASE_NAMES = {
    Basis.practices: {
        Base.for_against: "the practices voting For or Against",
        Base.cast: "the practices casting a ballot",
        Base.eligible: "the eligible practices",
    },
    Basis.votes: {
        Base.for_against: "the weighted votes cast For or Against",
        Base.cast: "the weighted votes cast",
        Base.eligible: "the eligible weighted votes",
    },
}


@dataclass(frozen=True)
class Elector:
    locality: str
    votes: int


@dataclass(frozen=True)
class Paper:
    locality: str
    votes: int
    choices: Mapping[str, str]


@dataclass(frozen=True)
class Figures:
    practices: int
    votes: int

    def on(self, basis: Basis) -> int:
        return self.practices if basis is Basis.practices else self.votes


@dataclass(frozen=True)
class LocalityResult:
    counts: Mapping[str, Figures]
    cast: Figures
    eligible: Figures
    met: bool


@dataclass(frozen=True)
class QuestionResult:
    question_id: str
    rules: ResolvedRules
    counts: Mapping[str, Figures]
    cast: Figures
    eligible: Figures
    quorum_met: bool
    threshold_met: bool
    localities: Mapping[str, LocalityResult] | None  # only when every_locality is on
    outcome: Outcome

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready figures and outcome, fractions as text such as "2/3"."""
        data = asdict(self)
        data["rules"] = self.rules.model_dump(mode="json")
        data["outcome"] = self.outcome.value
        return data


def _bases(basis: ThresholdBasis) -> tuple[Basis, ...]:
    return (Basis.practices, Basis.votes) if basis is ThresholdBasis.both else (Basis(basis),)


def _figures(entries: Iterable[Elector | Paper]) -> Figures:
    entries = list(entries)
    return Figures(practices=len(entries), votes=sum(e.votes for e in entries))


def _passes(
    threshold: Threshold, counts: Mapping[str, Figures], cast: Figures, eligible: Figures
) -> bool:
    """Whether For clears the threshold on every basis it is counted on."""
    for basis in _bases(threshold.basis):
        in_favour, against = counts["For"].on(basis), counts["Against"].on(basis)
        # Ties are never carried. Asking for more For than Against in general is the same rule
        # for any bar of 1/2 or more, and below 1/2 it stops one more For vote losing a proposal.
        if in_favour <= against:
            return False
        base = {
            Base.for_against: in_favour + against,
            Base.cast: cast.on(basis),
            Base.eligible: eligible.on(basis),
        }[threshold.base]
        bar = threshold.fraction * base
        cleared = in_favour > bar if threshold.comparison is Comparison.exceed else in_favour >= bar
        if base <= 0 or not cleared:
            return False
    return True


def count_question(
    rules: ResolvedRules,
    *,
    question_id: str,
    options: Sequence[str],
    electors: Sequence[Elector],
    papers: Sequence[Paper],
) -> QuestionResult:
    """Count one question's figures, overall and by locality, and decide its outcome."""
    if "For" not in options or "Against" not in options:
        raise ValueError(f'question "{question_id}" must offer both For and Against')
    roll_localities = sorted({e.locality for e in electors})
    # A paper without an answer to this question is not a ballot cast on it.
    answered = [(p, p.choices[question_id]) for p in papers if question_id in p.choices]
    for paper, option in answered:
        # Never echo the option or the paper: an error must not reveal a choice.
        if option not in options:
            raise ValueError(f'a ballot answers question "{question_id}" with an unknown option')
        if paper.locality not in roll_localities:
            raise ValueError("a ballot comes from a locality that is not on the roll")

    def tally(locality: str | None) -> tuple[dict[str, Figures], Figures, Figures]:
        mine = [(p, o) for p, o in answered if locality in (None, p.locality)]
        counts = {option: _figures(p for p, o in mine if o == option) for option in options}
        cast = _figures(p for p, _ in mine)
        return counts, cast, _figures(e for e in electors if locality in (None, e.locality))

    counts, cast, eligible = tally(None)
    quorum = rules.quorum
    # Abstentions are ballots cast, so they count towards the quorum.
    quorum_met = quorum is None or (
        cast.on(quorum.basis) >= quorum.fraction * eligible.on(quorum.basis)
    )
    threshold_met = _passes(rules.threshold, counts, cast, eligible)
    localities = None
    if rules.every_locality:
        localities = {}
        for locality in roll_localities:
            local_counts, local_cast, local_eligible = tally(locality)
            met = _passes(rules.threshold, local_counts, local_cast, local_eligible)
            localities[locality] = LocalityResult(local_counts, local_cast, local_eligible, met)
    if not quorum_met:
        outcome = Outcome.quorum_not_met
    elif threshold_met and all(loc.met for loc in (localities or {}).values()):
        outcome = Outcome.carried
    else:
        outcome = Outcome.not_carried
    return QuestionResult(
        question_id=question_id,
        rules=rules,
        counts=counts,
        cast=cast,
        eligible=eligible,
        quorum_met=quorum_met,
        threshold_met=threshold_met,
        localities=localities,
        outcome=outcome,
    )


def count(
    rules: Rules,
    *,
    questions: Sequence[tuple[str, Sequence[str], QuestionRules | None]],
    electors: Sequence[Elector],
    papers: Sequence[Paper],
) -> list[QuestionResult]:
    """Count every (question id, options, own rules) of a ballot under the ballot's rules."""
    return [
        count_question(
            rules.for_question(own),
            question_id=question_id,
            options=options,
            electors=electors,
            papers=papers,
        )
        for question_id, options, own in questions
    ]


def declare(
    rules: Rules,
    *,
    questions: Sequence[tuple[str, Sequence[str], QuestionRules | None]],
    electors: Sequence[Elector],
    papers: Sequence[Paper],
) -> dict[str, Any]:
    """The result as published and as the verifier recomputes it (JSON-ready)."""
    results = count(rules, questions=questions, electors=electors, papers=papers)
    return {
        "eligible": len(electors),
        "ballots_cast": len(papers),
        "constitution_ref": rules.constitution_ref,
        "questions": [r.as_dict() for r in results],
    }
