"""The count and its rules, by scenario, and against an independent recount."""

import itertools
import json
import tomllib
from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from app import counting

OPTIONS = ("For", "Against", "Abstain")
LOCALITIES = ("North", "South", "East", "West")
PROPERTY = settings(max_examples=200, deadline=None)


def rules_with(**fields: Any) -> counting.Rules:
    return counting.Rules.model_validate({"constitution_ref": "Constitution, 6.6.2", **fields})


def resolved(
    threshold: dict[str, Any] | None = None,
    quorum: dict[str, Any] | None = None,
    every_locality: bool = False,
) -> counting.ResolvedRules:
    return counting.ResolvedRules.model_validate(
        {
            "threshold": threshold or {"fraction": "1/2"},
            "quorum": quorum,
            "every_locality": every_locality,
        }
    )


def roll(locality: str, practices: int, votes: int = 1) -> list[counting.Elector]:
    return [counting.Elector(locality=locality, votes=votes)] * practices


def papers(locality: str, *options: str, votes: int = 1) -> list[counting.Paper]:
    return [counting.Paper(locality=locality, votes=votes, choices={"q": o}) for o in options]


def count(
    rules: counting.ResolvedRules,
    electors: Sequence[counting.Elector],
    box: Sequence[counting.Paper],
) -> counting.QuestionResult:
    return counting.count_question(
        rules, question_id="q", options=OPTIONS, electors=electors, papers=box
    )


def test_tie_is_not_carried() -> None:
    box = papers("North", "For", "For", "Against", "Against", "Abstain")
    assert count(resolved(), roll("North", 6), box).outcome == counting.Outcome.not_carried


def test_tie_is_not_carried_even_when_half_is_enough_to_reach() -> None:
    rules = resolved({"fraction": "1/2", "comparison": "reach"})
    box = papers("North", "For", "Against")
    assert count(rules, roll("North", 2), box).outcome == counting.Outcome.not_carried


def test_two_thirds_reached_exactly_is_carried() -> None:
    rules = rules_with(preset="two_thirds").for_question(None)
    box = papers("North", *["For"] * 6, *["Against"] * 3)
    assert count(rules, roll("North", 9), box).outcome == counting.Outcome.carried


def test_two_thirds_exactly_does_not_exceed_two_thirds() -> None:
    rules = resolved({"fraction": "2/3", "comparison": "exceed"})
    box = papers("North", *["For"] * 6, *["Against"] * 3)
    assert count(rules, roll("North", 9), box).outcome == counting.Outcome.not_carried


def test_just_short_of_two_thirds_is_not_carried() -> None:
    rules = rules_with(preset="two_thirds").for_question(None)
    box = papers("North", *["For"] * 5, *["Against"] * 3)
    assert count(rules, roll("North", 8), box).outcome == counting.Outcome.not_carried


def test_abstentions_count_towards_quorum() -> None:
    rules = resolved(quorum={"fraction": "1/2"})
    voted = papers("North", "For", "For", "Against")
    abstained = papers("North", "Abstain", "Abstain")
    assert count(rules, roll("North", 10), voted).outcome == counting.Outcome.quorum_not_met
    result = count(rules, roll("North", 10), voted + abstained)
    assert result.quorum_met
    assert result.cast == counting.Figures(practices=5, votes=5)
    assert result.outcome == counting.Outcome.carried


def test_quorum_not_met_whatever_the_votes() -> None:
    rules = resolved(quorum={"fraction": "1/2"})
    result = count(rules, roll("North", 10), papers("North", *["For"] * 4))
    assert result.threshold_met
    assert result.outcome == counting.Outcome.quorum_not_met


def test_quorum_on_weighted_votes() -> None:
    rules = resolved(quorum={"fraction": "1/2", "basis": "votes"})
    electors = roll("North", 1, votes=10) + roll("North", 4)
    # One practice in five has voted, but it holds 10 of the 14 votes.
    result = count(rules, electors, papers("North", "For", votes=10))
    assert result.outcome == counting.Outcome.carried


def test_double_majority_needs_both() -> None:
    electors = roll("North", 3) + roll("North", 2, votes=10)
    box = papers("North", "For", "For", "For") + papers("North", "Against", "Against", votes=10)
    by = {
        basis: count(resolved({"fraction": "1/2", "basis": basis}), electors, box).outcome
        for basis in counting.ThresholdBasis
    }
    assert by == {
        counting.ThresholdBasis.practices: counting.Outcome.carried,
        counting.ThresholdBasis.votes: counting.Outcome.not_carried,
        counting.ThresholdBasis.both: counting.Outcome.not_carried,
    }


def test_double_majority_carried_when_both_pass() -> None:
    electors = roll("North", 3) + roll("North", 2, votes=10)
    box = papers("North", "For", "For", "Against") + papers("North", "For", "Against", votes=10)
    rules = resolved({"fraction": "1/2", "comparison": "exceed", "basis": "both"})
    # Practices 3 to 2; votes 12 to 11.
    assert count(rules, electors, box).outcome == counting.Outcome.carried


def test_every_locality_fails_when_one_locality_against() -> None:
    electors = roll("North", 5) + roll("South", 3)
    box = papers("North", *["For"] * 5) + papers("South", "For", "Against", "Against")
    assert count(resolved(), electors, box).outcome == counting.Outcome.carried
    result = count(resolved(every_locality=True), electors, box)
    assert result.threshold_met
    assert result.localities is not None
    assert {name: loc.met for name, loc in result.localities.items()} == {
        "North": True,
        "South": False,
    }
    assert result.outcome == counting.Outcome.not_carried


def test_every_locality_lists_a_locality_where_nobody_voted_and_fails_it() -> None:
    electors = roll("North", 5) + roll("South", 3)
    result = count(resolved(every_locality=True), electors, papers("North", *["For"] * 5))
    assert result.localities is not None
    south = result.localities["South"]
    assert south.cast == counting.Figures(practices=0, votes=0)
    assert south.eligible == counting.Figures(practices=3, votes=3)
    assert not south.met
    assert result.outcome == counting.Outcome.not_carried


def test_every_locality_uses_each_localitys_eligible_figures() -> None:
    rules = resolved({"fraction": "1/2", "base": "eligible"}, every_locality=True)
    electors = roll("North", 4) + roll("South", 2)
    box = papers("North", "For", "For", "For") + papers("South", "For", "Abstain")
    # Overall 4 of 6 eligible; North 3 of 4; South 1 of 2 is not more than half.
    result = count(rules, electors, box)
    assert result.threshold_met
    assert result.outcome == counting.Outcome.not_carried


def test_majority_of_eligible_counts_those_who_did_not_vote() -> None:
    rules = rules_with(preset="majority_of_eligible").for_question(None)
    assert count(rules, roll("North", 10), papers("North", *["For"] * 5)).outcome == (
        counting.Outcome.not_carried
    )
    assert count(rules, roll("North", 10), papers("North", *["For"] * 6)).outcome == (
        counting.Outcome.carried
    )


def test_abstaining_counts_against_when_the_base_is_ballots_cast() -> None:
    rules = resolved({"fraction": "1/2", "base": "cast"})
    box = papers("North", "For", "For", "Against", "Abstain")
    assert count(rules, roll("North", 4), box).outcome == counting.Outcome.not_carried
    assert count(resolved(), roll("North", 4), box).outcome == counting.Outcome.carried


def test_a_bar_below_half_still_needs_more_for_than_against() -> None:
    rules = resolved({"fraction": "1/3"})
    behind = papers("North", "For", "For", "Against", "Against", "Against")
    ahead = papers("North", "For", "For", "Against")
    assert count(rules, roll("North", 5), behind).outcome == counting.Outcome.not_carried
    assert count(rules, roll("North", 5), ahead).outcome == counting.Outcome.carried


def test_no_ballots_is_not_carried() -> None:
    result = count(resolved(quorum={"fraction": "0"}), roll("North", 3), [])
    assert result.quorum_met
    assert result.outcome == counting.Outcome.not_carried


def test_paper_without_an_answer_does_not_count_for_the_question() -> None:
    box = [*papers("North", "For"), counting.Paper(locality="North", votes=1, choices={})]
    result = count(resolved(quorum={"fraction": "1/2"}), roll("North", 3), box)
    assert result.cast == counting.Figures(practices=1, votes=1)
    assert result.outcome == counting.Outcome.quorum_not_met


def test_unknown_option_is_refused_without_naming_it() -> None:
    box = papers("North", "Perhaps-later")
    with pytest.raises(ValueError, match="unknown option") as raised:
        count(resolved(), roll("North", 1), box)
    assert "Perhaps-later" not in str(raised.value)


def test_paper_from_a_locality_not_on_the_roll_is_refused() -> None:
    with pytest.raises(ValueError, match="not on the roll"):
        count(resolved(), roll("North", 1), papers("South", "For"))


def test_per_patients_weighting_minimum_one() -> None:
    rules = rules_with(
        weighting="per_patients",
        patients_per_vote=1000,
        list_size_source="NHS Digital, Patients Registered at a GP Practice",
        list_size_date="2016-10-01",
    )
    assert rules.votes_for(1) == 1
    assert rules.votes_for(999) == 1
    assert rules.votes_for(4999) == 4
    assert rules.votes_for(12000) == 12
    assert rules_with().votes_for(12000) == 1


def test_per_patients_weighting_names_what_is_missing() -> None:
    with pytest.raises(ValidationError) as raised:
        rules_with(weighting="per_patients", patients_per_vote=1000)
    message = raised.value.errors()[0]["msg"]
    assert "list_size_source, list_size_date" in message
    assert "patients_per_vote" not in message


def test_weighting_details_are_refused_with_equal_weighting() -> None:
    with pytest.raises(ValidationError, match="only matter when weighting is"):
        rules_with(patients_per_vote=1000)


def test_constitution_reference_is_required_and_not_blank() -> None:
    with pytest.raises(ValidationError, match="must not be blank"):
        counting.Rules.model_validate({"constitution_ref": "  "})
    with pytest.raises(ValidationError, match="constitution_ref"):
        counting.Rules.model_validate({})


def test_unknown_rule_is_refused() -> None:
    with pytest.raises(ValidationError, match="quorum_fraction"):
        rules_with(quorum_fraction="1/2")


@pytest.mark.parametrize(
    ("preset", "expected"),
    [
        (None, {"fraction": "1/2", "comparison": "exceed", "base": "for_against"}),
        ("simple_majority", {"fraction": "1/2", "comparison": "exceed", "base": "for_against"}),
        ("two_thirds", {"fraction": "2/3", "comparison": "reach", "base": "for_against"}),
        ("majority_of_eligible", {"fraction": "1/2", "comparison": "exceed", "base": "eligible"}),
    ],
)
def test_preset_gives_the_threshold(preset: str | None, expected: dict[str, str]) -> None:
    got = rules_with(preset=preset).for_question(None)
    assert got.threshold == counting.Threshold.model_validate({**expected, "basis": "practices"})
    assert got.quorum is None


def test_explicit_threshold_beats_the_preset() -> None:
    rules = rules_with(preset="two_thirds", threshold={"fraction": "3/4", "comparison": "reach"})
    assert rules.for_question(None).threshold.fraction == Fraction(3, 4)


def test_question_rules_override_the_ballot_rules_field_by_field() -> None:
    rules = rules_with(quorum={"fraction": "1/2"}, every_locality=True)
    override = counting.QuestionRules.model_validate(
        {"threshold": {"fraction": "2/3", "comparison": "reach"}, "every_locality": False}
    )
    got = rules.for_question(override)
    assert got.quorum == rules.quorum
    assert got.threshold.fraction == Fraction(2, 3)
    assert not got.every_locality
    assert rules.for_question(None).every_locality
    assert rules.for_question(counting.QuestionRules()) == rules.for_question(None)


def test_count_applies_each_questions_own_rules() -> None:
    rules = rules_with()
    own = counting.QuestionRules.model_validate({"threshold": {"fraction": "2/3"}})
    box = [
        counting.Paper(locality="North", votes=1, choices={"a": choice, "b": choice})
        for choice in ("For", "For", "Against")
    ]
    results = counting.count(
        rules,
        questions=[("a", OPTIONS, None), ("b", OPTIONS, own)],
        electors=roll("North", 3),
        papers=box,
    )
    assert [(r.question_id, r.outcome) for r in results] == [
        ("a", counting.Outcome.carried),
        ("b", counting.Outcome.not_carried),
    ]


def test_result_as_dict_is_json_with_fractions_as_text() -> None:
    rules = resolved({"fraction": "2/3"}, quorum={"fraction": "0.5"}, every_locality=True)
    data = count(rules, roll("North", 3), papers("North", "For", "Abstain")).as_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["rules"]["threshold"]["fraction"] == "2/3"
    assert data["rules"]["quorum"]["fraction"] == "1/2"
    assert data["counts"]["Abstain"] == {"practices": 1, "votes": 1}
    assert data["localities"]["North"]["met"] is True
    assert data["outcome"] == "carried"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("2/3", Fraction(2, 3)),
        (" 1 / 3 ", Fraction(1, 3)),
        ("0.5", Fraction(1, 2)),
        (".75", Fraction(3, 4)),
        (0.5, Fraction(1, 2)),
        (0.1, Fraction(1, 10)),
        (Decimal("0.25"), Fraction(1, 4)),
        (1, Fraction(1)),
        ("1", Fraction(1)),
    ],
)
def test_fraction_is_read_from_text_or_number(given: object, expected: Fraction) -> None:
    assert counting.Threshold.model_validate({"fraction": given}).fraction == expected


@pytest.mark.parametrize(
    ("model", "given", "message"),
    [
        (counting.Quorum, "two thirds", 'must be a fraction such as "1/2" or "2/3"'),
        (counting.Quorum, True, 'must be a fraction such as "1/2" or "2/3"'),
        (counting.Quorum, float("nan"), 'must be a fraction such as "1/2" or "2/3"'),
        (counting.Quorum, "1e-1", 'must be a fraction such as "1/2" or "2/3"'),
        (counting.Quorum, "1/0", "must not have 0 as the bottom of the fraction"),
        (counting.Quorum, "1/00", "must not have 0 as the bottom of the fraction"),
        (counting.Quorum, "1" * 5000, 'must be a fraction such as "1/2" or "2/3"'),
        (counting.Quorum, "3/2", "must be between 0 and 1"),
        (counting.Quorum, "-1/2", "must be between 0 and 1"),
        (counting.Threshold, "0", "must be more than 0 and at most 1"),
        (counting.Threshold, 1.5, "must be more than 0 and at most 1"),
    ],
)
def test_bad_fraction_is_refused_with_a_sentence(
    model: type[counting.Quorum | counting.Threshold], given: object, message: str
) -> None:
    with pytest.raises(ValidationError) as raised:
        model.model_validate({"fraction": given})
    [error] = raised.value.errors()
    assert error["loc"] == ("fraction",)
    assert error["msg"].removeprefix("Value error, ").startswith(message)


def test_zero_quorum_is_allowed() -> None:
    assert counting.Quorum.model_validate({"fraction": 0}).fraction == 0


def test_rules_round_trip_through_json() -> None:
    rules = rules_with(
        preset="simple_majority",
        weighting="per_patients",
        patients_per_vote=5000,
        list_size_source="NHS Digital, Patients Registered at a GP Practice",
        list_size_date=date(2016, 10, 1),
        quorum={"fraction": "1/3", "basis": "votes"},
        threshold={"fraction": "2/3", "comparison": "reach", "base": "cast", "basis": "both"},
        every_locality=True,
    )
    text = rules.model_dump_json()
    assert '"fraction":"2/3"' in text
    assert counting.Rules.model_validate_json(text) == rules
    assert counting.Rules.model_validate(rules.model_dump()) == rules


def test_rules_load_from_a_ballot_file() -> None:
    loaded = tomllib.loads(
        """
        [rules]
        preset = "simple_majority"
        constitution_ref = "Constitution, clause 6.6.2"
        quorum = { fraction = "1/2", basis = "practices" }
        """
    )
    rules = counting.Rules.model_validate(loaded["rules"])
    assert rules.quorum == counting.Quorum(fraction=Fraction(1, 2))


def test_describe_states_the_bar_and_the_quorum() -> None:
    rules = rules_with(quorum={"fraction": "1/2"})
    assert rules.describe(rules.for_question(None)) == (
        "Carried if more than 1/2 of the practices voting For or Against vote For; "
        "quorum: at least 1/2 of the eligible practices must vote."
    )
    double = resolved({"fraction": "2/3", "comparison": "reach", "basis": "both"}, None, True)
    assert rules.describe(double) == (
        "Carried if at least 2/3 of the practices voting For or Against vote For, and at least "
        "2/3 of the weighted votes cast For or Against are For, both overall and in every "
        "locality; no quorum."
    )


def test_describe_abstain_depends_on_the_base() -> None:
    rules = rules_with(quorum={"fraction": "1/2"})
    assert rules.describe_abstain(rules.for_question(None)) == (
        "Abstain counts towards the quorum but not for or against the proposal."
    )
    cast = resolved({"fraction": "1/2", "base": "cast"}, {"fraction": "1/2"})
    assert rules.describe_abstain(cast) == (
        "Abstain counts towards the quorum, but because the proposal needs more than 1/2 of "
        "the practices casting a ballot to be For, abstaining has the same effect on the result "
        "as voting Against."
    )
    eligible = resolved({"fraction": "2/3", "base": "eligible"}, {"fraction": "1/2"})
    assert "of the eligible practices" in rules.describe_abstain(eligible)
    assert "same effect on the result as voting Against" in rules.describe_abstain(eligible)


# Properties: the module's count against a recount that shares none of its code.


@st.composite
def fractions(draw: st.DrawFn, *, zero: bool) -> Fraction:
    denominator = draw(st.integers(1, 12))
    low = 0 if zero else 1
    common = [
        Fraction(1, 2),
        Fraction(2, 3),
        Fraction(1, 3),
        Fraction(1, 4),
        Fraction(1),
        *([Fraction(0)] if zero else []),
    ]
    return draw(
        st.sampled_from(common)
        | st.integers(low, denominator).map(lambda n: Fraction(n, denominator))
    )


@st.composite
def any_rules(draw: st.DrawFn) -> counting.ResolvedRules:
    threshold = counting.Threshold(
        fraction=draw(fractions(zero=False)),
        comparison=draw(st.sampled_from(counting.Comparison)),
        base=draw(st.sampled_from(counting.Base)),
        basis=draw(st.sampled_from(counting.ThresholdBasis)),
    )
    quorum = draw(
        st.none()
        | st.builds(
            counting.Quorum,
            fraction=fractions(zero=True),
            basis=st.sampled_from(counting.Basis),
        )
    )
    return counting.ResolvedRules(
        quorum=quorum, threshold=threshold, every_locality=draw(st.booleans())
    )


@st.composite
def elections(draw: st.DrawFn) -> tuple[list[counting.Elector], list[str | None]]:
    """1 to 30 electors in 1 to 4 localities, and what each chose (None: did not vote)."""
    localities = LOCALITIES[: draw(st.integers(1, 4))]
    # Each election has its own mix of choices, and each choice its own range of weights, so
    # lopsided, close and tied counts turn up, and practices and votes often disagree.
    mix = draw(st.lists(st.sampled_from([*OPTIONS, None]), min_size=1, max_size=5))
    if draw(st.booleans()):
        mix += ["For", "Against"]
    weights = {
        choice: draw(st.lists(st.integers(1, 20), min_size=1, max_size=3))
        for choice in [*OPTIONS, None]
    }
    drawn = draw(
        st.lists(
            st.tuples(st.sampled_from(mix), st.integers(0, 2), st.sampled_from(localities)),
            min_size=1,
            max_size=30,
        )
    )
    choices = [choice for choice, _, _ in drawn]
    electors = [
        counting.Elector(locality, weights[choice][n % len(weights[choice])])
        for choice, n, locality in drawn
    ]
    return electors, choices


def box_of(electors: list[counting.Elector], choices: list[str | None]) -> list[counting.Paper]:
    return [
        counting.Paper(locality=e.locality, votes=e.votes, choices={"q": choice})
        for e, choice in zip(electors, choices, strict=True)
        if choice is not None
    ]


def recount(
    rules: counting.ResolvedRules,
    electors: list[counting.Elector],
    choices: list[str | None],
) -> tuple[str, bool, dict[str, tuple[int, int]], dict[str, bool]]:
    """Outcome, threshold verdict, counts per option and per-locality verdicts, by plain loops."""
    # Rows are [practices, votes]; the key None stands for the whole membership.
    cast: dict[str | None, dict[str, list[int]]] = {}
    eligible: dict[str | None, list[int]] = {}
    for elector, choice in zip(electors, choices, strict=True):
        for key in (None, elector.locality):
            row = eligible.setdefault(key, [0, 0])
            row[0] += 1
            row[1] += elector.votes
            if choice is not None:
                tally = cast.setdefault(key, {}).setdefault(choice, [0, 0])
                tally[0] += 1
                tally[1] += elector.votes

    threshold = rules.threshold
    top, bottom = threshold.fraction.numerator, threshold.fraction.denominator

    def clears(key: str | None) -> bool:
        columns = {"practices": [0], "votes": [1], "both": [0, 1]}[threshold.basis]
        for i in columns:
            tallies = cast.get(key, {})
            yes = tallies.get("For", [0, 0])[i]
            no = tallies.get("Against", [0, 0])[i]
            everyone = sum(t[i] for t in tallies.values())
            base = {"for_against": yes + no, "cast": everyone, "eligible": eligible[key][i]}
            scaled_yes, scaled_base = yes * bottom, top * base[threshold.base]
            if yes <= no or scaled_base == 0 or scaled_yes < scaled_base:
                return False
            if threshold.comparison == "exceed" and scaled_yes == scaled_base:
                return False
        return True

    counts = {}
    for option in OPTIONS:
        practices, votes = cast.get(None, {}).get(option, [0, 0])
        counts[option] = (practices, votes)
    overall = clears(None)
    localities = {key: clears(key) for key in eligible if key is not None}
    quorum = rules.quorum
    if quorum is not None:
        i = 0 if quorum.basis == "practices" else 1
        turnout = sum(t[i] for t in cast.get(None, {}).values())
        if turnout * quorum.fraction.denominator < quorum.fraction.numerator * eligible[None][i]:
            return "quorum_not_met", overall, counts, localities
    carried = overall and (not rules.every_locality or all(localities.values()))
    return ("carried" if carried else "not_carried"), overall, counts, localities


def variants(rules: counting.ResolvedRules) -> list[counting.ResolvedRules]:
    """The same fraction, quorum and locality rule with every comparison, base and basis."""
    # Close contests are rare in random elections, so each one is tried against every bar.
    every = itertools.product(counting.Comparison, counting.Base, counting.ThresholdBasis)
    return [
        counting.ResolvedRules(
            quorum=rules.quorum,
            threshold=counting.Threshold(
                fraction=rules.threshold.fraction, comparison=comparison, base=base, basis=basis
            ),
            every_locality=rules.every_locality,
        )
        for comparison, base, basis in every
    ]


@PROPERTY
@given(rules=any_rules(), election=elections())
def test_count_agrees_with_an_independent_recount(
    rules: counting.ResolvedRules,
    election: tuple[list[counting.Elector], list[str | None]],
) -> None:
    electors, choices = election
    for variant in variants(rules):
        result = count(variant, electors, box_of(electors, choices))
        outcome, threshold_met, counts, localities = recount(variant, electors, choices)
        assert (result.outcome, result.threshold_met) == (outcome, threshold_met), variant
        assert {o: (f.practices, f.votes) for o, f in result.counts.items()} == counts
        assert result.cast.practices == sum(c is not None for c in choices)
        assert result.eligible.votes == sum(e.votes for e in electors)
        if variant.every_locality:
            assert result.localities is not None
            assert {name: loc.met for name, loc in result.localities.items()} == localities
        else:
            assert result.localities is None


@PROPERTY
@given(rules=any_rules(), election=elections(), late_votes=st.integers(1, 20))
def test_one_more_for_vote_never_loses_a_carried_proposal(
    rules: counting.ResolvedRules,
    election: tuple[list[counting.Elector], list[str | None]],
    late_votes: int,
) -> None:
    electors, choices = election
    # A practice that has not voted yet, so that every example has someone to add.
    electors = [*electors, counting.Elector(electors[0].locality, late_votes)]
    choices = [*choices, None]
    waiting = [i for i, choice in enumerate(choices) if choice is None]
    for variant in variants(rules):
        if count(variant, electors, box_of(electors, choices)).outcome != "carried":
            continue
        for late in waiting:
            after = [*choices[:late], "For", *choices[late + 1 :]]
            assert count(variant, electors, box_of(electors, after)).outcome == "carried"


@PROPERTY
@given(rules=any_rules(), election=elections(), data=st.data())
def test_order_of_the_ballot_box_does_not_matter(
    rules: counting.ResolvedRules,
    election: tuple[list[counting.Elector], list[str | None]],
    data: st.DataObject,
) -> None:
    electors, choices = election
    box = box_of(electors, choices)
    shuffled = data.draw(st.permutations(box))
    assert count(rules, electors, shuffled).as_dict() == count(rules, electors, box).as_dict()


@PROPERTY
@given(rules=any_rules())
def test_resolved_rules_round_trip_through_json(rules: counting.ResolvedRules) -> None:
    assert counting.ResolvedRules.model_validate_json(rules.model_dump_json()) == rules
