"""Rank1(family=...) serves the released pair families end to end (random-weight Qwen2-shaped
model, real Qwen2.5 tokenizer, transformers engine): the engine receives the released prompts
byte for byte (the fixtures made from the released code), and the scores are the released
formulas over a plain transformers forward pass."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from tolerances import LAYOUT_TOL

from thinkrank.errors import InvalidInputError
from thinkrank.families import qwen3_reranker, tfrank
from thinkrank.families.base import ModelInput
from thinkrank.rerankers.base import RerankRequest
from thinkrank.rerankers.cached import CachedReranker
from thinkrank.rerankers.pointwise import Rank1

FIXTURES = Path(__file__).parent / "fixtures" / "families"


class Recording:
    """The real engine, recording the prompts it is given (everything else passes through)."""

    def __init__(self, engine: Any) -> None:
        self._engine, self.scored, self.generated = engine, [], []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def next_token_logprobs(self, prompts, token_ids, progress=None, **kwargs):
        self.scored.extend(prompts)
        return self._engine.next_token_logprobs(prompts, token_ids, progress, **kwargs)

    def generate(self, requests, progress=None, **kwargs):
        self.generated.extend(r.prompt for r in requests)
        return self._engine.generate(requests, progress, **kwargs)


def fixture_requests(name: str) -> tuple[list[RerankRequest], list[str]]:
    """The fixture's cases as one request per (instruction, query), and their prompts in order."""
    inputs = json.loads((FIXTURES / f"{name}.json").read_text())["inputs"]
    groups: dict[tuple[Any, str], list[str]] = {}
    for case in inputs:
        groups.setdefault((case["instruction"], case["query"]), []).append(case["document"])
    requests = [RerankRequest(query, docs, instruction=instruction) for (instruction, query), docs in groups.items()]
    return requests, [case["prompt"] for case in inputs]


@pytest.fixture(scope="module")
def plain(tiny_qwen_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_qwen_path)
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen_path, dtype=torch.float32).eval()
    return tokenizer, model


def plain_logprobs(plain, text: str, tokens: list[str]) -> dict[str, float]:
    """log_softmax of a plain forward pass's last logits, at the ids of ``tokens``."""
    tokenizer, model = plain
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
    with torch.no_grad():
        logprobs = torch.log_softmax(model(ids).logits[0, -1].double(), dim=-1)
    return {t: float(logprobs[tokenizer.convert_tokens_to_ids(tokenizer.tokenize(t))[0]]) for t in tokens}


def test_qwen3_reranker_prompts_and_scores_are_the_released_ones(tiny_qwen_engine, plain):
    engine = Recording(tiny_qwen_engine)
    ranker = Rank1(engine=engine, family="qwen3-reranker")
    requests, prompts = fixture_requests("qwen3_reranker")
    rankings = ranker.rerank_many(requests)
    assert engine.scored == prompts and engine.generated == []
    judgments = [j for r in rankings for j in sorted(r, key=lambda j: j.index)]
    for judgment, prompt in zip(judgments, prompts):
        lp = plain_logprobs(plain, prompt, ["yes", "no"])
        # README compute_logits: log_softmax over [no, yes] logits, exp of the "yes" entry.
        expected = math.exp(lp["yes"]) / (math.exp(lp["yes"]) + math.exp(lp["no"]))
        assert judgment.score == pytest.approx(expected, abs=LAYOUT_TOL)
        assert judgment.answer == ("yes" if lp["yes"] >= lp["no"] else "no")
        assert judgment.fallback is None and judgment.reasoned is False
    assert ranker.settings["family"] == "qwen3-reranker" and ranker.settings["think_budget"] == 0


def test_tfrank_prompts_are_the_released_ones_and_no_grade_is_flagged(tiny_qwen_engine):
    engine = Recording(tiny_qwen_engine)
    ranker = Rank1(engine=engine, family="tfrank", think_budget=2)
    requests, prompts = fixture_requests("tfrank")
    rankings = ranker.rerank_many(requests)
    assert engine.generated == prompts
    assert engine.scored[: len(prompts)] == prompts  # P(yes) is read at the end of the prompt itself
    for judgment in (j for r in rankings for j in r):
        # The random model writes no "yes(" / "no(": the released deal() defaults, flagged.
        assert judgment.fallback == "no-grade" and judgment.stop_reason == "length" and judgment.answer is None
        assert judgment.score == (0.5 / 4 + 0.5) / 2
        assert judgment.to_dict()["parts"] == {"grade": 0.5, "p_yes": 0.5, "merged": 0.3125}


def test_tfrank_grade_is_read_right_after_the_stop_string(tiny_qwen_engine, plain):
    """The after-stop path: a TFRank variant whose grade marker is the token this random model
    writes first, so the grade is read (the released family's marker it never writes)."""
    query, document = "What is the capital of China?", "The capital of China is Beijing."
    prompt = tfrank.build(query, document, None).prompt
    tokenizer, model = plain
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt").input_ids
    with torch.no_grad():
        first = int(model(ids).logits[0, -1].argmax())
    marker = tokenizer.decode([first])
    assert marker.strip(), "the test needs a visible first token"
    variant = dataclasses.replace(
        tfrank.FAMILY, generation=dataclasses.replace(tfrank.FAMILY.generation, stop=(marker,)))
    ranker = Rank1(engine=tiny_qwen_engine, family=variant)  # TFRank's prompt, readings and score
    judgment = ranker.rerank(query, [document])[0]
    yes_no = plain_logprobs(plain, prompt, ["yes", "no"])
    grades = plain_logprobs(plain, prompt + marker, list("01234"))
    p_yes = math.exp(yes_no["yes"]) / (math.exp(yes_no["yes"]) + math.exp(yes_no["no"]))
    total = sum(math.exp(v) for v in grades.values())
    grade = sum(int(g) * math.exp(v) / total for g, v in grades.items())
    assert judgment.stop_reason == "stop" and judgment.fallback is None
    assert judgment.parts["grade"] == pytest.approx(grade, abs=LAYOUT_TOL)
    assert judgment.parts["p_yes"] == pytest.approx(p_yes, abs=LAYOUT_TOL)
    assert judgment.score == pytest.approx((grade / 4 + p_yes) / 2, abs=LAYOUT_TOL)
    assert judgment.answer == ("yes" if p_yes >= 0.5 else "no")


def test_the_cache_keeps_a_familys_scores_and_fallbacks(tmp_path, tiny_qwen_engine):
    docs = ["The capital of China is Beijing.", "Gravity attracts bodies.", "光合作用是植物利用光能的过程。"]
    for family, options in (("qwen3-reranker", {}), ("tfrank", {"think_budget": 2})):
        ranker = Rank1(engine=tiny_qwen_engine, family=family, **options)
        plain_run = ranker.rerank("capital of China", docs)
        cached = CachedReranker(ranker, tmp_path / f"{family}.sqlite")
        first = cached.rerank("capital of China", docs)
        again = cached.rerank("capital of China", docs)
        assert cached.use.cached == len(docs) and cached.use.computed == len(docs)
        assert cached.settings["family"] == family
        for a, b, c in zip(plain_run, first, again):
            assert a.to_dict() == b.to_dict() == c.to_dict()
            assert c.fallback == ("no-grade" if family == "tfrank" else None)


def test_a_chat_family_is_rendered_with_the_models_template(tiny_qwen_engine, plain):
    """A family giving chat messages: its prompt-end reading is taken on the model's chat
    template rendering followed by the assistant prefix (a Qwen3-Reranker variant in chat form)."""
    def build(query: str, document: str, instruction: str | None) -> ModelInput:
        user = f"<Instruct>: {instruction or qwen3_reranker.DEFAULT_INSTRUCTION}\n<Query>: {query}\n<Document>: {document}"
        return ModelInput(messages=({"role": "system", "content": qwen3_reranker.SYSTEM}, {"role": "user", "content": user}),
                          assistant_prefix="<think>\n\n</think>\n\n")

    chat = dataclasses.replace(qwen3_reranker.FAMILY, name="qwen3-reranker-chat", build=build)
    engine = Recording(tiny_qwen_engine)
    docs = ["The capital of China is Beijing.", "Gravity attracts bodies."]
    ranking = Rank1(engine=engine, family=chat).rerank("capital of China", docs)
    tokenizer, _ = plain
    expected_prompts = [
        tokenizer.apply_chat_template(list(build("capital of China", d, None).messages), tokenize=False,
                                      add_generation_prompt=True) + "<think>\n\n</think>\n\n"
        for d in docs
    ]
    assert engine.scored == expected_prompts
    for judgment in ranking:
        lp = plain_logprobs(plain, expected_prompts[judgment.index], ["yes", "no"])
        expected = math.exp(lp["yes"]) / (math.exp(lp["yes"]) + math.exp(lp["no"]))
        assert judgment.score == pytest.approx(expected, abs=LAYOUT_TOL)


def test_rank1_options_and_a_cascade_are_refused_for_other_families(tiny_qwen_engine):
    with pytest.raises(InvalidInputError, match="cheap first pass"):
        Rank1(engine=tiny_qwen_engine, family="qwen3-reranker", cascade=10)
    with pytest.raises(InvalidInputError, match="reasoning off"):
        Rank1(engine=tiny_qwen_engine, family="qwen3-reranker", reasoning=True)
    with pytest.raises(InvalidInputError, match="true_token is a rank1 option"):
        Rank1(engine=tiny_qwen_engine, family="tfrank", true_token=" yes")
    with pytest.raises(InvalidInputError, match="publishes no model"):
        Rank1(family="tfrank")  # before any model loads
    with pytest.raises(InvalidInputError, match="unknown family 'monot5'"):
        Rank1(engine=tiny_qwen_engine, family="monot5")
    with pytest.raises(InvalidInputError, match="'reasonrank' is not a pointwise family: give one of rank1, qwen3-reranker"):
        Rank1(engine=tiny_qwen_engine, family="reasonrank")


def test_the_exported_constructors_are_rank1_with_the_family(tiny_qwen_engine):
    from thinkrank import Qwen3Reranker, TFRank

    assert Qwen3Reranker(engine=tiny_qwen_engine).settings == Rank1(engine=tiny_qwen_engine, family="qwen3-reranker").settings
    assert TFRank(engine=tiny_qwen_engine).settings["family"] == "tfrank"


def test_judge_reports_batches_and_cuts_passages_to_the_limit(tiny_qwen_engine):
    from thinkrank.rerankers.pointwise import Pair
    from thinkrank.types import Document

    long = "Beijing is the capital of the People's Republic of China and its political centre."
    pairs = [Pair("capital of China", Document(str(i), text), i) for i, text in enumerate([long, "Gravity.", long])]
    engine = Recording(tiny_qwen_engine)
    ranker = Rank1(engine=engine, family="qwen3-reranker", max_passage_tokens=4)
    seen: list[int] = []
    judged = ranker.judge(pairs, on_judged=lambda positions, js: seen.extend(positions))
    assert sorted(seen) == [0, 1, 2]
    cut = tiny_qwen_engine.tokenizer.decode(tiny_qwen_engine.tokenizer.encode(long)[:4])
    assert engine.scored[0] == qwen3_reranker.build("capital of China", cut, None).prompt
    assert [j.truncated for j in judged] == [True, False, True]
    assert judged[0].score == judged[2].score
