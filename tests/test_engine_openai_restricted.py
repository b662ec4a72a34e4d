"""Reading answer log-probs from restricted one-token requests, on hand-computed values."""

from __future__ import annotations

import math

import pytest

from thinkrank.engines.restricted import Reading, check_restricted, forced_value, missing, renormalise
from thinkrank.errors import EngineError


def test_raw_values_are_renormalised_over_the_answer_ids():
    # p(true) = 0.3, p(false) = 0.1 of the full softmax -> 0.75 and 0.25 between the two.
    got = renormalise({830: math.log(0.3), 895: math.log(0.1)}, [830, 895], "server")
    assert got[830] == pytest.approx(math.log(0.75), abs=1e-12)
    assert got[895] == pytest.approx(math.log(0.25), abs=1e-12)


def test_values_already_restricted_stay_as_they_are():
    got = renormalise({1: math.log(0.6), 2: math.log(0.4)}, [1, 2], "server")
    assert (got[1], got[2]) == (pytest.approx(math.log(0.6)), pytest.approx(math.log(0.4)))


def test_an_answer_with_probability_zero_keeps_minus_infinity():
    got = renormalise({1: -math.inf, 2: math.log(0.2)}, [1, 2], "server")
    assert got == {1: -math.inf, 2: pytest.approx(0.0)}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({1: -1.0}, r"no usable log-probability for token ids \[2\]"),
        ({1: -1.0, 2: math.nan}, r"no usable log-probability for token ids \[2\]"),
        ({1: -math.inf, 2: -math.inf}, "probability 0"),
        ({1: math.log(0.9), 2: math.log(0.5)}, "summing to 1.4000 > 1"),
    ],
)
def test_values_that_cannot_give_an_exact_ratio_are_errors(values, message):
    with pytest.raises(EngineError, match=message):
        renormalise(values, [1, 2], "server")


def test_a_sampled_token_outside_the_answers_means_the_restriction_was_ignored():
    check_restricted(Reading(2, {2: -0.1}), [1, 2], "server")
    for sampled in (None, 3):
        with pytest.raises(EngineError, match=r"server ignored the restriction to token ids \[1, 2\]"):
            check_restricted(Reading(sampled, {}), [1, 2], "server")


def test_missing_answers_and_forced_values():
    reading = Reading(1, {1: -0.5})
    assert missing(reading, [1, 2]) == [2]
    assert forced_value(Reading(2, {2: -3.25}), 2, "server") == -3.25
    with pytest.raises(EngineError, match="ignored the restriction"):
        forced_value(Reading(1, {1: -0.1}), 2, "server")
