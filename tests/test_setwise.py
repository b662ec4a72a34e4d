"""Rank-R1 (setwise) as a reranker: a random-weight Qwen2.5-shaped chat model with the exact Qwen
tokenizer on the transformers engine, and a scripted engine that answers as the judge the
released sorts were run with (tests/fixtures/families/rank_r1_released.json)."""

from __future__ import annotations

import importlib.util
import json
import logging
import re
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from thinkrank import RankR1, RerankRequest
from thinkrank.engines import Engine, Generation
from thinkrank.engines.transformers import HFTokenizer
from thinkrank.errors import InvalidInputError
from thinkrank.families import rank_r1
from tests.engines import Recorder

HERE = Path(__file__).parent / "fixtures/families"
FIXTURES = json.loads((HERE / "rank_r1_released.json").read_text("utf-8"))
_spec = importlib.util.spec_from_file_location("make_fixtures", HERE / "make_listwise_setwise_fixtures.py")
_generator = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_generator)
scripted_choice = _generator.scripted_choice  # the judge the released sorts were run with

TOPICS = ["cats", "stocks", "rain", "chess", "bread"]


def _docs(n: int, tag: str) -> list[dict]:
    return [{"id": f"{tag}{i}", "text": f"Note {i} is about {TOPICS[i % 5]}."} for i in range(n)]


class ScriptedEngine:
    """An engine double (the whole Engine protocol) over the exact Qwen2.5 tokenizer and its chat
    template. ``judge(query, shown ids) -> position in the shown order, or None`` decides each
    answer, written as the released models write it (None: text without the answer tags). The
    documents must read ``Passage <id> …``, so the double sees which were shown, in which order."""

    name, model_name = "scripted", "scripted-rank-r1"

    def __init__(self, hf_tokenizer, judge, context_length=None):
        self._tok, self.judge, self.calls = HFTokenizer(hf_tokenizer), judge, []
        self._context_length = context_length

    @property
    def tokenizer(self):
        return self._tok

    @property
    def context_length(self):
        return self._context_length

    def apply_chat_template(self, messages):
        return self._tok.hf.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)

    def next_token_logprobs(self, prompts, token_ids, progress=None, *, on_batch=None, shared_prefixes=None):
        raise AssertionError("a setwise reranker never asks next-token log-probabilities")

    def generate(self, requests, progress=None, *, on_batch=None):
        self.calls.append(list(requests))
        out = []
        for req in requests:
            prompt = self._tok.prompt_text(req)  # the chat as the model reads it
            query = re.search(r'Given the query: "(.*?)", which', prompt).group(1)
            shown = tuple(int(x) for x in re.findall(r"^\[\d+\] Passage (\d+) ", prompt, re.MULTILINE))
            position = self.judge(query, shown)
            text = ("The answer is [1], I think." if position is None
                    else f"<think>Passage {shown[position]} answers it.</think>\n<answer>[{position + 1}]</answer>")
            out.append(Generation(text, "eos", len(self._tok.encode(text)), len(self._tok.encode(prompt))))
        if progress:
            progress(len(out))
        if on_batch:
            on_batch(list(range(len(out))), out)
        return out


@pytest.fixture(scope="module")
def qwen_tok(tiny_qwen_path):
    return AutoTokenizer.from_pretrained(tiny_qwen_path)


ADAPTER_ID = "ielabgroup/Rank-R1-3B-v0.1"


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory, tiny_qwen_path):
    """A Hugging Face cache holding ``ADAPTER_ID`` as a real LoRA adapter (random, nonzero) over the
    tiny Qwen model, in the hub client's own layout, with the hub offline: what a user who
    downloaded the released adapter has, shrunk."""
    import torch
    from huggingface_hub import constants
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    cache = tmp_path_factory.mktemp("hub")
    repo = cache / ("models--" + ADAPTER_ID.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_qwen_path)
    lora = LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(base, lora).save_pretrained(repo / "snapshots" / commit)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(constants, "HF_HUB_CACHE", str(cache))
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield repo / "snapshots" / commit


def test_a_released_adapter_id_loads_as_base_plus_adapter(hub_cache, tiny_qwen_path):
    from thinkrank.engines.loading import resolve_model
    from thinkrank.errors import ModelLoadError
    from thinkrank.rerankers.setwise import adapter_source

    config = json.loads((hub_cache / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tiny_qwen_path)
    for engine in ("transformers", "vllm"):
        assert Path(adapter_source(ADAPTER_ID, engine)) == hub_cache
    ref = resolve_model(adapter_source(ADAPTER_ID, "transformers"))
    assert (ref.source, Path(ref.adapter)) == (str(tiny_qwen_path), hub_cache)
    assert adapter_source(ADAPTER_ID, "openai") == ADAPTER_ID  # a server serves it under its own name
    assert adapter_source("org/plain-model", "transformers") == "org/plain-model"
    with pytest.raises(ModelLoadError, match="HF_HUB_OFFLINE"):
        adapter_source("ielabgroup/Rank-R1-14B-v0.1", "transformers")  # not in the cache


def _passages(n: int) -> list[dict]:
    return [{"id": f"p{i}", "text": f"Passage {i} on heaps, variant {i * 13 % 17}."} for i in range(n)]


def test_comparisons_of_all_queries_share_each_generate_call(hub_cache, tiny_qwen_path, qwen_tok):
    ranker = RankR1(ADAPTER_ID, engine="transformers", device="cpu", k=3, num_child=3, max_tokens=3)
    assert ranker.engine.model_name == f"{tiny_qwen_path}+{hub_cache}"  # base + the released adapter
    ranker.engine = rec = Recorder(ranker.engine, scores=False)
    docs_a, docs_b = _docs(7, "a"), _docs(4, "b")
    rankings = ranker.rerank_many([RerankRequest("notes about cats", docs_a, "qa"), ("rain today", docs_b)])
    # one call per round: each holds the pending comparison of every query still sorting
    rounds = max(len(r.comparisons) for r in rankings)
    assert [len(reqs) for reqs in rec.calls] == [sum(len(r.comparisons) > s for r in rankings) for s in range(rounds)]
    prompts = {}
    for s, reqs in enumerate(rec.calls):
        for req, r in zip(reqs, [r for r in rankings if len(r.comparisons) > s]):
            prompts[r.query, s] = req
    for ranking, docs in zip(rankings, (docs_a, docs_b)):
        replay = rank_r1.SetwiseSort(len(docs), k=3, num_child=3, seed=0)
        for trace in ranking.comparisons:
            # the sort asked what the traces say, in this order
            assert (list(replay.pending.docs), list(replay.pending.shown)) == (trace.indices, trace.shown)
            replay.answer(trace.chosen)
            # what the model saw: the released chat through the tokenizer's own template, greedy
            chat = rank_r1.build_input(ranking.query, [docs[i]["text"] for i in trace.shown])
            expected = qwen_tok.apply_chat_template(list(chat.messages), tokenize=False, add_generation_prompt=True)
            req = prompts[ranking.query, trace.step]
            assert req.messages == chat.messages and rec.tokenizer.prompt_text(req) == expected
            assert (req.max_tokens, req.temperature, req.seed) == (3, 0.0, None)
            # a random model writes no answer tags: each answer is unexpected, flagged, the parent kept
            assert trace.chosen is None and trace.fallback == "unexpected" and "parent is kept" in trace.detail
            assert trace.completion_tokens <= 3 and trace.prompt_tokens > 0
        assert replay.done and [j.index for j in ranking] == replay.ranking()
        assert ranking.unexpected_comparisons == len(ranking.comparisons)
        assert [j.score for j in ranking] == pytest.approx([1 / p for p in range(1, len(docs) + 1)])
        assert sorted(ranking.doc_ids) == sorted(d["id"] for d in docs)
    assert rankings[0].to_dict()["comparisons"][0]["fallback"] == "unexpected"


def _fixture_judge(cases):
    """The released sorts' judge (its answer depends on the set, not on the order shown)."""
    def judge(query, shown):
        return scripted_choice(shown, cases[int(query.split()[1])]["relevance"])
    return judge


@pytest.mark.parametrize("group", [("heapsort", 10, 19), ("bubblesort", 10, 19), ("heapsort", 5, 3),
                                   ("bubblesort", 3, 3), ("bubblesort", 4, 2)], ids=str)
def test_scripted_answers_give_the_released_sorts_rankings_batched_across_queries(qwen_tok, caplog, group):
    method, k, num_child = group
    cases = [c for c in FIXTURES["sorts"] if (c["method"], c["k"], c["num_child"]) == group]
    engine = ScriptedEngine(qwen_tok, _fixture_judge(cases))
    assert isinstance(engine, Engine)
    caplog.set_level(logging.WARNING, logger="thinkrank.rerankers.setwise")
    ranker = RankR1(engine=engine, method=method, k=k, num_child=num_child)  # shuffled sets, seed 0
    rankings = ranker.rerank_many([(f"query {q}", _passages(c["n"])) for q, c in enumerate(cases)])
    asked = [[c for c in case["calls"] if len(c) >= 2] for case in cases]  # sets of one cost no call
    assert len(engine.calls) == max(len(a) for a in asked)
    assert [len(reqs) for reqs in engine.calls] == [sum(len(a) > s for a in asked) for s in range(len(engine.calls))]
    for ranking, case, calls in zip(rankings, cases, asked):
        assert [j.index for j in ranking] == case["ranking"]
        assert [t.indices for t in ranking.comparisons] == calls
        assert all(sorted(t.shown) == sorted(t.indices) for t in ranking.comparisons)
        # the released judge's "Unexpected voting." sets: flagged, each keeping its parent
        unexpected = [t for t in ranking.comparisons if t.chosen is None]
        assert [t.indices for t in unexpected] == [c for c in calls if sum(c) % 7 == 3]
        assert all(t.fallback == "unexpected" and t.answer == "The answer is [1], I think." for t in unexpected)
        for t in ranking.comparisons:
            if t.chosen is not None:
                assert t.fallback is None and t.reasoning == f"Passage {t.chosen} answers it."
                assert t.answer == f"<answer>[{t.shown.index(t.chosen) + 1}]</answer>"
    flagged = sum(r.unexpected_comparisons for r in rankings)
    assert len([m for m in caplog.messages if "parent is kept" in m]) == flagged
    if group == ("heapsort", 10, 19):
        assert flagged > 0


def _first_shown(query, shown):
    return 0  # always "[1]": the ranking then follows the shuffles alone


def test_rankings_are_deterministic_and_independent_of_the_batch(qwen_tok):
    requests = [(f"query {q}", _passages(n)) for q, n in enumerate((30, 12, 45))]

    def run(batch, seed=0):
        return RankR1(engine=ScriptedEngine(qwen_tok, _first_shown), seed=seed, k=5, num_child=4).rerank_many(batch)

    together = run(requests)
    alone = [run([r])[0] for r in requests]
    again = run(requests)
    for a, b, c in zip(together, alone, again):
        assert a.doc_ids == b.doc_ids == c.doc_ids
        assert [t.shown for t in a.comparisons] == [t.shown for t in b.comparisons] == [t.shown for t in c.comparisons]
    other = run(requests, seed=1)
    assert [r.doc_ids for r in other] != [r.doc_ids for r in together]  # the seed draws the shuffles
    # sampling: comparison i of every query samples with seed + i, whatever the batch
    engine = ScriptedEngine(qwen_tok, _first_shown)
    RankR1(engine=engine, seed=5, temperature=0.7, k=5, num_child=4).rerank_many(requests)
    assert [{r.seed for r in reqs} for reqs in engine.calls] == [{5 + i} for i in range(len(engine.calls))]
    assert all(r.temperature == 0.7 for reqs in engine.calls for r in reqs)


def test_judgments_carry_the_chain_that_chose_them_and_top_n_cuts(qwen_tok):
    relevance = [(i * 7) % 25 for i in range(25)]
    engine = ScriptedEngine(qwen_tok, lambda q, shown: max(range(len(shown)), key=lambda j: relevance[shown[j]]))
    ranking = RankR1(engine=engine, k=3, num_child=4).rerank("heaps", _passages(25), top_n=5)
    top = sorted(range(25), key=lambda i: -relevance[i])[:3]
    assert [j.index for j in ranking][:3] == top and len(ranking) == 5
    for j in ranking.top(3):
        assert j.reasoning == f"Passage {j.index} answers it." and j.prompt_tokens > 0
    assert len(ranking.comparisons) > 0 and ranking.unexpected_comparisons == 0


def test_bad_settings_and_inputs_are_refused_before_any_work(qwen_tok):
    for bad in ({"method": "quicksort"}, {"k": 0}, {"num_child": 20}, {"max_tokens": 0}, {"seed": "x"},
                {"max_passage_tokens": 0}, {"shuffle": "yes"}):
        with pytest.raises(InvalidInputError):  # before the (missing) model would load
            RankR1("no-such-org/no-such-model", engine="transformers", **bad)
    engine = ScriptedEngine(qwen_tok, _first_shown, context_length=400)
    ranker = RankR1(engine=engine, max_tokens=300)
    with pytest.raises(InvalidInputError, match="context of 400"):
        ranker.check(("heaps", _passages(5)))
    with pytest.raises(InvalidInputError, match="query"):
        ranker.check(("  ", _passages(5)))
    assert engine.calls == []
    assert RankR1(engine=engine).rerank("heaps", _passages(1)).doc_ids == ["p0"]  # nothing to compare
    assert engine.calls == []


def test_passages_are_cut_as_released_and_flagged(qwen_tok):
    long = {"id": "long", "text": "Passage 1 " + "heap " * 50}
    engine = ScriptedEngine(qwen_tok, _first_shown)
    ranking = RankR1(engine=engine, max_passage_tokens=12).rerank("heaps", [_passages(1)[0], long])
    cut = qwen_tok.convert_tokens_to_string(qwen_tok.tokenize(long["text"])[:12])
    prompt = engine.tokenizer.prompt_text(engine.calls[0][0])
    assert f"] {cut}\n" in prompt and long["text"] not in prompt
    assert ranking["long"].truncated and not ranking["p0"].truncated
    settings = RankR1(engine=engine).settings
    assert (settings["mode"], settings["family"], settings["seed"], RankR1.kind) == ("setwise", "rank-r1", 0, "set")
    assert RankR1(engine=engine, seed=3).settings != settings and RankR1(engine=engine, k=4).settings != settings
