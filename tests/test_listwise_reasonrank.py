"""RankK serving the ReasonRank family: the chats it sends are the released ones, the released
parser's orders come out of it, and every fallback is recorded and logged.

A real engine (random-weight Qwen2-shaped model, the exact Qwen2.5 tokenizer and chat template)
checks the bytes the model sees against the released code's rendered prompts
(``tests/fixtures/families/reasonrank_released.json``); an engine double over the same tokenizer
drives known outputs through RankK and checks the released parser's orders and window plans.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from thinkrank import RankK, ReasonRank, RerankRequest
from thinkrank.engines import Engine, Generation
from thinkrank.engines.transformers import HFTokenizer
from thinkrank.errors import InvalidInputError
from thinkrank.families import reasonrank
from tests.engines import Recorder

FIXTURES = json.loads((Path(__file__).parent / "fixtures" / "families" / "reasonrank_released.json").read_text())
UNCUT = [c for c in FIXTURES["inputs"] if c["truncation"] is None]


class ScriptedEngine:
    """An engine double (the whole Engine protocol) over the exact Qwen2.5 tokenizer and template:
    a window of the query ``case K`` is answered with ``outputs[K]``."""

    name = "scripted"

    def __init__(self, hf_tokenizer, outputs, model_name="scripted-reasonrank"):
        self._tok, self.outputs, self.model_name, self.calls = HFTokenizer(hf_tokenizer), outputs, model_name, []

    @property
    def tokenizer(self):
        return self._tok

    @property
    def context_length(self):
        return None

    def apply_chat_template(self, messages):
        return self._tok.apply_chat_template(messages)

    def next_token_logprobs(self, *args, **kwargs):
        raise AssertionError("a listwise reranker never asks next-token log-probabilities")

    def generate(self, requests, progress=None, *, on_batch=None):
        self.calls.append(list(requests))
        out = []
        for req in requests:
            case = int(re.search(r"search query: case (\d+)\b", req.messages[-1]["content"]).group(1))
            text = self.outputs[case]
            out.append(Generation(text, "eos", len(self._tok.encode(text)), 100))
        if progress:
            progress(len(out))
        return out


@pytest.fixture(scope="module")
def qwen_tok(tiny_qwen_path):
    return AutoTokenizer.from_pretrained(tiny_qwen_path)


def test_the_model_sees_the_released_prompts_and_fallbacks_are_recorded(tiny_qwen_engine, caplog):
    cases = [c for c in UNCUT if c["mode"] == "reasoning"]
    ranker = RankK(engine=tiny_qwen_engine, family="reasonrank", max_tokens=4)
    assert (ranker.max_tokens, ranker.temperature) == (4, 0.0)
    ranker.engine = rec = Recorder(tiny_qwen_engine, scores=False)
    requests = [RerankRequest(c["query"], c["passages"], f"q{i}", c["instruction"]) for i, c in enumerate(cases)]
    with caplog.at_level(logging.WARNING, logger="thinkrank.rerankers.listwise"):
        rankings = ranker.rerank_many(requests)
    assert len(rec.calls) == 1 and len(rec.calls[0]) == len(cases)  # one window each, batched
    for case, req, ranking in zip(cases, rec.calls[0], rankings):
        chat = reasonrank.build_input(case["query"], case["passages"], mode="reasoning", instruction=case["instruction"])
        assert req.messages == chat.messages and req.prompt == "" and req.assistant_prefix == ""
        assert tiny_qwen_engine.apply_chat_template(req.messages) == case["prompt"]  # the released bytes
        (trace,) = ranking.windows
        # 4 random tokens hold no <answer>: the released whole-output reading, flagged and logged
        assert trace.fallback is not None and trace.fallback.reason == "no-answer"
        assert trace.to_dict()["fallback"]["reason"] == "no-answer"
        assert sorted(j.index for j in ranking) == list(range(len(case["passages"])))
    assert sum("no <answer> tag" in r.getMessage() for r in caplog.records) == len(cases)


def test_defaults_and_settings_follow_the_family(tiny_qwen_engine):
    ranker = ReasonRank(engine=tiny_qwen_engine)
    assert (ranker.max_tokens, ranker.temperature, ranker.family) == (3172, 0.0, "reasonrank")
    assert ranker.settings["family"] == "reasonrank" and ranker.settings["prompt_mode"] == "reasoning"
    rank_k = RankK(engine=tiny_qwen_engine)
    # Rank-K's settings (and so its cache keys) are what they were before families
    assert list(rank_k.settings) == ["mode", "model", "engine", "window", "stride", "depth", "max_tokens",
                                     "max_passage_tokens", "prompt", "instruction", "temperature", "seed", "scores"]
    assert (rank_k.max_tokens, rank_k.temperature) == (4096, 0.0)
    with pytest.raises(InvalidInputError, match="rank-k family only"):
        RankK(engine=tiny_qwen_engine, family="reasonrank", prompt="{query} {docs}")
    with pytest.raises(InvalidInputError, match="unknown listwise family 'rank1'.*rank-k, reasonrank"):
        RankK(engine=tiny_qwen_engine, family="rank1")


def test_scripted_outputs_give_the_released_parsers_orders(qwen_tok, caplog):
    parses = FIXTURES["parses"]
    engine = ScriptedEngine(qwen_tok, [p["output"] for p in parses])
    assert isinstance(engine, Engine)
    ranker = RankK(engine=engine, family="reasonrank")
    requests = [(f"case {i}", [f"Passage {k} of case {i}." for k in range(p["n"])]) for i, p in enumerate(parses)]
    with caplog.at_level(logging.WARNING, logger="thinkrank.rerankers.listwise"):
        rankings = ranker.rerank_many(requests)
    assert len(engine.calls) == 1  # every query's only window in one call
    flagged = 0
    for case, ranking in zip(parses, rankings):
        assert [j.index for j in ranking] == case["order"], case["name"]  # the released parser's order
        (trace,) = ranking.windows
        expected = reasonrank.read_window(case["output"], case["n"]).answer.fallback
        assert trace.fallback == expected, case["name"]
        flagged += expected is not None
    assert flagged >= 8  # junk, empty, missing, duplicates, out-of-window, superscript, …: never silent
    assert sum("window 0-" in r.getMessage() for r in caplog.records) == flagged


def test_qwen3_mode_and_the_released_window_plan(qwen_tok):
    outputs = ["<think>x</think><answer>[2] > [1]</answer>"] * 2
    engine = ScriptedEngine(qwen_tok, outputs, model_name="liuwenhan/reasonrank-8B")
    ranker = RankK(engine=engine, family="reasonrank")
    assert (ranker.max_tokens, ranker.temperature) == (3172, 0.6) and ranker.settings["prompt_mode"] == "qwen3"
    case = next(c for c in UNCUT if c["mode"] == "qwen3")
    ranker.rerank("case 0 " + case["query"], case["passages"])
    (req,) = engine.calls[0]
    assert req.messages == reasonrank.build_input("case 0 " + case["query"], case["passages"], mode="qwen3").messages
    for plan in FIXTURES["windows"]:
        engine.calls.clear()
        ranker = RankK(engine=engine, family="reasonrank", window=plan["window"], stride=plan["step"],
                       depth=plan["depth"])
        ranking = ranker.rerank("case 1", [f"d{i}" for i in range(plan["n"])])
        assert [[w.start, w.end] for w in ranking.windows] == plan["spans"], plan  # the released windows


def test_reasonrank_8b_samples_with_its_released_filters(tiny_qwen_path, tmp_path):
    """A checkpoint folder named reasonrank-8B (qwen3 mode): every window is sampled at the
    released temperature 0.6, top-p 0.95, top-k 20, min-p 0, on a real engine, and the settings
    (so cache keys) name them; greedy (temperature 0) sends and names none."""
    folder = tmp_path / "reasonrank-8B"
    folder.symlink_to(tiny_qwen_path, target_is_directory=True)
    ranker = RankK(str(folder), engine="transformers", family="reasonrank", max_tokens=4, seed=1)
    assert ranker.settings["prompt_mode"] == "qwen3"
    assert {k: ranker.settings[k] for k in ("temperature", "top_p", "top_k", "min_p")} == {
        "temperature": 0.6, "top_p": 0.95, "top_k": 20, "min_p": 0.0}
    engine = ranker.engine
    ranker.engine = rec = Recorder(engine, scores=False)
    ranker.rerank("which is red", [f"passage {i}" for i in range(3)])
    (req,) = rec.calls[0]
    assert (req.temperature, req.top_p, req.top_k, req.min_p, req.seed) == (0.6, 0.95, 20, 0.0, 1)
    greedy = RankK(engine=engine, family="reasonrank", max_tokens=4, temperature=0.0)
    assert greedy.settings["prompt_mode"] == "qwen3" and not {"top_p", "top_k", "min_p"} & set(greedy.settings)
    greedy.engine = rec = Recorder(engine, scores=False)
    greedy.rerank("which is red", ["a", "b"])
    (req,) = rec.calls[0]
    assert (req.temperature, req.top_p, req.top_k, req.min_p) == (0.0, None, None, None)
