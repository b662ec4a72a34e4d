"""ReasonRank against its released code: prompts, reading and windows, from fixtures made by
running 8421BCD/ReasonRank (tests/fixtures/families/make_listwise_setwise_fixtures.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("ftfy", reason="ReasonRank prompts need ftfy (a core dependency: pip install ftfy)")

import jinja2

from thinkrank.errors import InvalidInputError
from thinkrank.families import reasonrank
from thinkrank.families.truncation import token_truncation

FIXTURES = json.loads((Path(__file__).parent / "fixtures/families/reasonrank_released.json").read_text("utf-8"))


class CharTokenizer:
    """One token per character, as the fixture generator's truncated case."""

    def tokenize(self, text: str) -> list[str]:
        return list(text)

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return "".join(tokens)


def render(messages) -> str:
    # transformers renders chat templates with these jinja2 settings
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(FIXTURES["chat_template"]).render(messages=list(messages), add_generation_prompt=True)


@pytest.mark.parametrize("case", FIXTURES["inputs"], ids=lambda c: c["name"])
def test_window_input_is_the_released_prompt(case):
    cut = case["truncation"]
    truncate = token_truncation(CharTokenizer(), cut["max_tokens"]) if cut else None
    model_input = reasonrank.build_input(
        case["query"], case["passages"], mode=case["mode"], instruction=case["instruction"], truncate=truncate)
    assert model_input.prompt is None and model_input.assistant_prefix == ""
    assert [m["role"] for m in model_input.messages] == ["system", "user"]
    assert render(model_input.messages) == case["prompt"]


def test_fixture_inputs_exercise_ftfy_and_the_id_rewrite():
    """The unicode case is only a test if the released code changed it (else fix_text could be skipped)."""
    case = next(c for c in FIXTURES["inputs"] if c["name"] == "rank_GPT_reasoning/unicode")
    assert "“" in case["passages"][0] and "“" not in case["prompt"] and "(12)" in case["prompt"]
    assert "fish & chips" in case["prompt"] and "&amp; more" in case["prompt"]  # passage unescaped, query not


EXPECTED_FALLBACK = {
    "normal": None, "normal-20": None, "duplicates": "missing-ids", "out-of-window": "missing-ids",
    "missing": "missing-ids", "no-think-close": "no-answer", "no-think-close-answer": "unclosed-answer",
    "answer-without-think": "unclosed-answer", "text-between": "unclosed-answer", "uppercase-tags": "missing-ids",
    "junk": "no-answer", "empty": "no-answer", "superscript": "unparsable", "huge-number": "unparsable",
    "arabic-indic": "missing-ids", "two-answers": "missing-ids", "bare-numbers": "missing-ids", "one": None,
    "zero-padded": None,
}


@pytest.mark.parametrize("case", FIXTURES["parses"], ids=lambda c: c["name"])
def test_reading_matches_the_released_parser(case):
    reading = reasonrank.read_window(case["output"], case["n"])
    assert list(reading.answer.order) == case["order"]
    assert reading.answer.ties == (False,) * case["n"]
    reason = reading.answer.fallback.reason if reading.answer.fallback else None
    assert reason == EXPECTED_FALLBACK[case["name"]]
    if "unexcepted output" in case["printed"]:  # the released code kept the window's order
        assert reason == "unparsable" and list(reading.answer.order) == list(range(case["n"]))
    if "too long" in case["printed"]:  # the released code found no <answer>
        assert reading.where == "whole-output"


def test_reading_reports_what_the_released_rule_dropped():
    reading = reasonrank.read_window("<think>x</think><answer>[2] > [2] > [9] > [1]</answer>", 3)
    assert reading.ids == (2, 2, 9, 1) and reading.duplicates == (2,) and reading.out_of_window == (9,)
    assert reading.missing == (3,) and reading.reasoning == "x" and reading.where == "answer"
    assert reasonrank.parse_window("", 2).fallback is not None


@pytest.mark.parametrize("case", FIXTURES["windows"], ids=lambda c: str(c["n"]))
def test_windows_are_the_released_ones(case):
    spans = reasonrank.plan_windows(case["n"], case["window"], case["step"], case["depth"])
    assert [list(s) for s in spans] == case["spans"]


def test_modes_and_bad_input():
    assert reasonrank.mode_for_model("liuwenhan/reasonrank-8B") == "qwen3"
    assert reasonrank.mode_for_model("/models/reasonrank-32B/") == "reasoning"
    assert reasonrank.mode_for_model("some/other-model") == "reasoning"
    with pytest.raises(InvalidInputError, match="mode"):
        reasonrank.build_input("q", ["p"], mode="rank_GPT")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="at least one passage"):
        reasonrank.build_input("q", [])
    with pytest.raises(InvalidInputError, match="query"):
        reasonrank.build_input("  ", ["p"])
    with pytest.raises(InvalidInputError, match="instruction"):
        reasonrank.build_input("q", ["p"], instruction=["x"])  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="n "):
        reasonrank.read_window("[1]", 0)
