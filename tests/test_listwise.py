"""Rank-K end to end on a real chat model (SmolLM2-135M-Instruct) through a real engine.

The engine is wrapped by a recorder that delegates every call and keeps what was asked and
what came back, so window contents, batching and seeds are checked against what the model
really saw and wrote. Rankings are checked against an independent replay of the windows.
"""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from thinkrank import RankK, RerankRequest
from thinkrank.engines.transformers import TransformersEngine
from thinkrank.errors import InvalidInputError
from thinkrank.prompts.rankk import build_rankk_prompt
from thinkrank.rerankers.listwise import plan_windows
from tests.engines import Recorder

pytestmark = pytest.mark.slow

# SmolLM2 does not follow the released prompt; this one makes it state an ordering (with a tie
# and trailing text) on its first line, which exercises the natural path on a real model.
STATES_AN_ORDER = "What is the ranking? The ranking is [10] > [2] = [7] > [1].\n\n{query}\n{docs}"
TOPICS = ["cats", "stocks", "rain", "chess", "bread"]


def _docs(n: int, tag: str) -> list[dict]:
    return [{"id": f"{tag}{i}", "text": f"Note {i} is about {TOPICS[i % 5]} and item {i}."} for i in range(n)]


@pytest.fixture(scope="module")
def hf_tok(smollm2_path):
    return AutoTokenizer.from_pretrained(smollm2_path)


def _chat(hf_tok, content: str) -> str:
    messages = [{"role": "user", "content": content}]
    return hf_tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def _replay(windows, n):
    """Apply each window's groups to a plain list; return the order and its tie groups."""
    order, group_of = list(range(n)), {i: (i,) for i in range(n)}
    for w in windows:
        assert order[w.start:w.end] == w.indices, "a window must see the order the previous one left"
        flat = [i for g in w.order for i in g]
        assert sorted(flat) == sorted(w.indices) and all(w.order)
        order[w.start:w.end] = flat
        for i in w.indices:  # later windows redraw the ties of the documents they hold
            group_of[i] = (i,)
        for g in w.order:
            for i in g:
                group_of[i] = tuple(g)
    return order, group_of


def _expected(order, group_of):
    """The released scoring, restated: 1/(p+1) for final position p (distinct, falling in the
    final order, ties in written order); a tie group survives while its members sit together."""
    scores = [(i, 1.0 / (p + 1)) for p, i in enumerate(order)]
    groups, g = [], -1
    for p, i in enumerate(order):
        g += not (p > 0 and order[p - 1] in group_of[i] and group_of[i] == group_of[order[p - 1]])
        groups.append(g)
    return scores, groups


def _check(ranking, docs, window, stride, depth):
    n = len(docs)
    assert sorted(ranking.doc_ids) == sorted(d["id"] for d in docs)
    assert [(w.start, w.end) for w in ranking.windows] == plan_windows(n, window, stride, depth)
    order, groups = _replay(ranking.windows, n)
    expected, tie_groups = _expected(order, groups)
    assert [j.index for j in ranking] == [i for i, _ in expected]
    assert [j.score for j in ranking] == pytest.approx([s for _, s in expected])
    assert [j.tie_group for j in ranking] == tie_groups
    for j in ranking:  # a judgment carries the chain of the last window that placed it
        last = [w for w in ranking.windows if j.index in w.indices]
        assert j.reasoning == (last[-1].reasoning if last else "")


def test_windows_of_different_queries_share_generate_calls(smollm2_engine, hf_tok):
    rec, seen = Recorder(smollm2_engine), []
    ranker = RankK(engine=rec, window=10, stride=5, max_tokens=16, progress=lambda d, t: seen.append((d, t)))
    docs_a, docs_b = _docs(25, "a"), _docs(8, "b")
    rankings = ranker.rerank_many([RerankRequest("notes about cats", docs_a, "qa"), ("rain today", docs_b)])
    # 25 candidates: 4 windows; 8 candidates: 1 window; step 0 of both in one batch
    assert [len(reqs) for reqs in rec.calls] == [2, 1, 1, 1]
    assert seen[-1] == (5, 5)
    for ranking, docs in zip(rankings, (docs_a, docs_b)):
        _check(ranking, docs, 10, 5, 100)
    # what the model saw: the released prompt through the model's own chat template, in the
    # order the previous window left, greedy, with the budget asked for
    windows = [rankings[0].windows[0], rankings[1].windows[0]] + rankings[0].windows[1:]
    queries = ["notes about cats", "rain today", "notes about cats", "notes about cats", "notes about cats"]
    sources = [docs_a, docs_b, docs_a, docs_a, docs_a]
    requests = [r for reqs in rec.calls for r in reqs]
    generations = [g for gens in rec.generations for g in gens]
    for req, gen, w, q, docs in zip(requests, generations, windows, queries, sources):
        assert req.messages == ({"role": "user", "content": build_rankk_prompt(q, [docs[i]["text"] for i in w.indices])},)
        assert smollm2_engine.tokenizer.prompt_text(req) == _chat(hf_tok, req.messages[0]["content"])
        assert (req.max_tokens, req.temperature) == (16, 0.0)
        assert (w.prompt_tokens, w.completion_tokens) == (gen.prompt_tokens, gen.num_tokens)
        if not w.ordering:  # no ordering: everything the model wrote is its reasoning
            assert w.reasoning == gen.text.strip()
            assert w.order == [[i] for i in w.indices]


def test_orderings_the_model_writes_are_applied_window_by_window(smollm2_engine):
    rec = Recorder(smollm2_engine)
    docs = _docs(15, "d")
    ranking = RankK(engine=rec, window=10, stride=5, max_tokens=24, prompt=STATES_AN_ORDER).rerank("cats", docs)
    _check(ranking, docs, 10, 5, 100)
    said = [g.text for gs in rec.generations for g in gs]
    assert all(t.startswith("The ranking is [10] > [2] = [7] > [1]") for t in said), said
    for w, text in zip(ranking.windows, said):
        x = w.indices  # [10] > [2] = [7] > [1], then the rest in window order
        assert w.order == [[x[9]], [x[1], x[6]], [x[0]], [x[2]], [x[3]], [x[4]], [x[5]], [x[7]], [x[8]]]
        assert (w.ordering, w.reasoning) == (text.strip(), "")
    # by hand: window [5, 15) leaves 0 1 2 3 4 | 14 (6=11) 5 7 8 9 10 12 13; window [0, 10) then
    # ranks 7 (1=6) 0 2 3 4 14 11 5 above the untouched 8 9 10 12 13; the 6=11 tie is gone
    assert [j.doc_id for j in ranking] == [f"d{i}" for i in (7, 1, 6, 0, 2, 3, 4, 14, 11, 5, 8, 9, 10, 12, 13)]
    assert [j.score for j in ranking] == pytest.approx([1 / p for p in range(1, 16)])  # distinct, as released
    assert [j.tie_group for j in ranking][:4] == [0, 1, 1, 2]  # the tie stays visible


def test_a_tie_keeps_the_order_the_model_wrote_and_a_trec_file_ranks_the_same(smollm2_engine, tmp_path):
    """The released Rank-K code scores window position i with 1/(i+1) (ties share a group's
    score there, then a stable sort keeps the written order) and writes its run with 1/(i+1)
    over the final list: every document distinct, in written order."""
    import ir_measures

    from thinkrank.datasets.runs import read_trec_run

    rec = Recorder(smollm2_engine)
    docs = _docs(10, "d")
    # a tie written against input order: [7] = [2], so d6 before d1
    prompt = "What is the ranking? The ranking is [10] > [7] = [2] > [1].\n\n{query}\n{docs}"
    ranking = RankK(engine=rec, window=10, stride=5, max_tokens=24, prompt=prompt).rerank("cats", docs, query_id="q1")
    said = rec.generations[0][0].text
    assert said.startswith("The ranking is [10] > [7] = [2] > [1]"), said
    assert ranking.windows[0].order[:3] == [[9], [6, 1], [0]] and ranking.windows[0].parsed
    # written order inside the tie: [7] before [2], i.e. d6 before d1
    assert ranking.doc_ids == ["d9", "d6", "d1", "d0", "d2", "d3", "d4", "d5", "d7", "d8"]
    scores = [j.score for j in ranking]
    assert scores == [1 / (p + 1) for p in range(10)] and len(set(scores)) == 10
    assert [j.tie_group for j in ranking][:4] == [0, 1, 1, 2]
    path = tmp_path / "run.trec"
    path.write_text("".join(line + "\n" for line in ranking.to_trec()))
    # trec_eval's order (score descending, ties by doc id descending), read from the file as written
    lines = [line.split() for line in path.read_text().splitlines()]
    by_trec_eval = [d for d, _ in sorted(((l[2], float(l[4])) for l in lines), key=lambda x: (x[1], x[0]), reverse=True)]
    assert by_trec_eval == ranking.doc_ids
    # ir-measures on the file finds the relevant document where the ranking has it
    rr = ir_measures.parse_measure("RR")
    found = ir_measures.calc_aggregate([rr], {"q1": {"d1": 1}}, read_trec_run(path).to_dict())[rr]
    assert found == pytest.approx(1 / (ranking.doc_ids.index("d1") + 1))


def test_budget_out_before_an_ordering_keeps_the_order(smollm2_engine, hf_tok):
    rec = Recorder(smollm2_engine)
    docs = _docs(12, "d")
    long_text = " ".join(f"word{i}" for i in range(200))
    docs[4]["text"] = docs[11]["text"] = long_text  # 11 is below the depth: never shown, never cut
    ranker = RankK(engine=rec, window=10, stride=5, depth=10, max_tokens=1, max_passage_tokens=16)
    ranking = ranker.rerank("notes", docs)
    assert [len(reqs) for reqs in rec.calls] == [1]
    (w,) = ranking.windows
    assert (w.start, w.end, w.forced, w.ordering, w.parsed) == (0, 10, True, "", False)
    assert ranking.doc_ids == [d["id"] for d in docs]  # head kept its order; tail follows
    assert [j.score for j in ranking] == pytest.approx([1 / (p + 1) for p in range(12)])
    assert [j.forced for j in ranking] == [True] * 10 + [False] * 2
    assert [j.truncated for j in ranking] == [i == 4 for i in range(12)]
    # the cut passage keeps its number and every other passage and instruction is intact
    cut = hf_tok.decode(hf_tok.encode(long_text, add_special_tokens=False)[:16])
    shown = [cut if i == 4 else docs[i]["text"] for i in range(10)]
    assert rec.calls[0][0].messages == ({"role": "user", "content": build_rankk_prompt("notes", shown)},)
    assert f"[5] {cut}\n\n[6] " in rec.calls[0][0].messages[0]["content"]
    assert len(ranker.rerank("notes", docs, top_n=3)) == 3


def test_sampling_is_reproducible_with_a_seed_and_seeds_differ_per_window(smollm2_engine):
    def run(seed):
        rec = Recorder(smollm2_engine)
        ranker = RankK(engine=rec, window=4, stride=2, max_tokens=6, temperature=1.5, seed=seed, prompt="{query}\n{docs}")
        rankings = ranker.rerank_many([("cats", _docs(6, "a")), ("rain", _docs(6, "b"))])
        return [[r.seed for r in reqs] for reqs in rec.calls], [w.to_dict() for r in rankings for w in r.windows]

    seeds, first = run(7)
    assert seeds == [[7, 9], [8, 10]]  # window k of the call (query by query) gets seed + k
    assert run(7)[1] == first
    assert run(8)[1] != first


def test_a_template_that_opens_the_chain(smollm2_engine, smollm2_path):
    # a QwQ-style template: the generation prompt already opens <think>. Cut by the budget
    # before </think>, the text is an unfinished chain and an ordering in it is only a draft;
    # once the model ends its turn, what it wrote is its answer.
    tok = AutoTokenizer.from_pretrained(smollm2_path)
    tok.chat_template = tok.chat_template.replace("assistant\n' }}", "assistant\n<think>\n' }}")
    engine = TransformersEngine(smollm2_engine.model, tokenizer=tok)
    said = "\nThe ranking is [10] > [2] = [7] > [1]"  # what the model writes, then ends its turn
    budget = len(tok.encode(said, add_special_tokens=False))  # all of it but the end of turn
    traces = {}
    for max_tokens in (budget, budget + 4):
        rec = Recorder(engine)
        ranker = RankK(engine=rec, window=10, max_tokens=max_tokens, prompt=STATES_AN_ORDER)
        (traces[max_tokens],) = ranker.rerank("cats", _docs(5, "d")).windows
        (req,), (gen,) = rec.calls[0], rec.generations[0]
        assert engine.tokenizer.prompt_text(req).endswith("<|im_start|>assistant\n<think>\n")
        assert gen.text == said, gen.text
    cut, ended = traces[budget], traces[budget + 4]
    assert (cut.forced, cut.ordering, cut.reasoning, cut.order) == (True, "", said.strip(), [[0], [1], [2], [3], [4]])
    # [10] and [7] are not in a 5-passage window: [2] > [1], then the rest in window order
    assert (ended.forced, ended.ordering, ended.order) == (False, said.strip(), [[1], [0], [2], [3], [4]])


def test_small_inputs_need_no_model_call_and_bad_input_is_refused(smollm2_engine):
    rec = Recorder(smollm2_engine)
    ranker = RankK(engine=rec)
    assert len(ranker.rerank("q", [])) == 0
    only = ranker.rerank("q", ["just one"])
    assert [(j.doc_id, j.score, j.reasoning) for j in only] == [("0", 1.0, "")] and only.windows == []
    assert rec.calls == []
    with pytest.raises(InvalidInputError, match="query is empty"):
        ranker.rerank("  ", ["a", "b"])
    with pytest.raises(InvalidInputError, match="share the id"):
        ranker.rerank("q", [{"id": "x", "text": "a"}, {"id": "x", "text": "b"}])
    assert ranker.settings["mode"] == "listwise" and ranker.settings["window"] == 20


def test_a_window_without_an_ordering_is_flagged_logged_and_counted(smollm2_engine, smollm2_path, tmp_path, caplog):
    import json
    import logging
    import subprocess
    import sys

    from thinkrank.datasets import load_collection
    from thinkrank.evaluation.report import render_report
    from thinkrank.evaluation.runner import evaluate, metrics_dict

    root = tmp_path / "tiny"
    (root / "runs").mkdir(parents=True)
    docs = _docs(6, "d")
    (root / "corpus.jsonl").write_text("".join(json.dumps({"_id": d["id"], "text": d["text"]}) + "\n" for d in docs))
    (root / "queries.jsonl").write_text('{"_id": "q1", "text": "cats"}\n{"_id": "q2", "text": "rain"}\n')
    (root / "qrels.trec").write_text("q1 0 d0 1\nq2 0 d2 1\n")
    (root / "runs" / "bm25.trec").write_text(
        "".join(f"{q} Q0 {d['id']} {r} {10 - r} bm25\n" for q in ("q1", "q2") for r, d in enumerate(docs, 1)))
    ranker = RankK(engine=smollm2_engine, window=4, stride=2, max_tokens=1)  # 1 token: never an ordering
    with caplog.at_level(logging.WARNING, logger="thinkrank.rerankers.listwise"):
        result = evaluate(load_collection(root), load_collection(root).run("bm25"), top_k=6, reranker=ranker)
    windows = [w for r in result.rankings.values() for w in r.windows]
    assert len(windows) == 4 and not any(w.parsed for w in windows)
    assert sum("no ordering in the model's output" in r.getMessage() for r in caplog.records) == 4
    assert metrics_dict(result)["windows"] == {"total": 4, "unparsed": 4, "unparsed_by_query": {"q1": 2, "q2": 2}}
    assert "Windows without an ordering" in render_report(result) and "4 of 4" in render_report(result)
    # the CLI says so on stderr
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    proc = subprocess.run(
        [sys.executable, "-m", "thinkrank", "rerank", "--mode", "listwise", "--model", str(smollm2_path), "--query",
         "cats", "--docs", str(tmp_path / "docs.jsonl"), "--window", "4", "--stride", "2", "--max-tokens", "1",
         "--format", "jsonl", "--quiet"], capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "2 of 2 listwise windows had no usable ordering" in proc.stderr
    assert [json.loads(line)["window"]["parsed"] for line in proc.stdout.splitlines() if "window" in line] == [False, False]
