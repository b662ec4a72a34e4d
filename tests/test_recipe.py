"""The SciFact recipe in miniature (a few claims, one or two optimiser steps, tiny chains), run
once per session: every stage's files, resuming, no test data before the evaluation, the model
folder loading in Rank1 with the scores the evaluation saw, and metrics and p-values equal to a
plain computation from the written run files."""

from __future__ import annotations

import json
import math
import time

import pytest
import torch

from thinkrank.errors import InvalidInputError
from thinkrank.recipes import RecipeConfig, run_recipe
from thinkrank.recipes.data import assert_no_test_leak
from thinkrank.recipes.scoring import fuse

pytest.importorskip("peft")
pytestmark = pytest.mark.slow

PASSAGE_TOKENS = 48


def _config(smollm2_path, data_dir, output, **change):
    settings = {"pairs": 8, "train_queries": 6, "dev_queries": 2, "chain_pairs": 3, "chain_tokens": 4,
                "learning_rates": (1e-3,), "max_steps": 1, "batch_size": 4, "micro_batch_size": 4, "depths": (2, 4),
                "test_queries": 2, "passage_tokens": PASSAGE_TOKENS, "cutoff_len": 256, "progress": False}
    return RecipeConfig(model=str(smollm2_path), data=data_dir / "scifact", output=output, **{**settings, **change})


@pytest.fixture(scope="module")
def mini(smollm2_path, data_dir, tmp_path_factory):
    config = _config(smollm2_path, data_dir, tmp_path_factory.mktemp("recipe") / "run")
    start = time.monotonic()
    result = run_recipe(config)
    return config, result, time.monotonic() - start


def _jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _trec(path):
    run = {}
    for line in path.read_text().splitlines():
        qid, _, doc, rank, score, _ = line.split()
        run.setdefault(qid, []).append((int(rank), doc, float(score)))
    return {q: [d for _, d, _ in sorted(v)] for q, v in run.items()}, {q: {d: s for _, d, s in v} for q, v in run.items()}


def _qrels(path):
    out = {}
    for line in path.read_text().splitlines():
        q, _, d, g = line.split()
        out.setdefault(q, {})[d] = int(g)
    return out


def _ndcg10(ranked, judged):
    dcg = sum(judged.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:10]))
    ideal = sorted((g for g in judged.values() if g > 0), reverse=True)[:10]
    return dcg / sum(g / math.log2(i + 2) for i, g in enumerate(ideal))


def _recall10(ranked, judged):
    relevant = {d for d, g in judged.items() if g > 0}
    return len(relevant & set(ranked[:10])) / len(relevant)


def test_every_stage_writes_its_files(mini):
    config, result, _ = mini
    out = config.output
    assert result.ran == ["data", "targets", "train", "evaluate", "model"] and not result.skipped
    for name in ("recipe.json", "data/split.json", "data/bm25-train.trec", "data/pairs.jsonl", "targets/direct.jsonl",
                 "targets/chains.jsonl", "targets/traces.sqlite", "targets/targets.json", "train/selection.json",
                 "eval/results.json", "eval/results.md", "model/README.md", "model/config.json", "model-card.md"):
        assert (out / name).is_file(), name
    direct = _jsonl(out / "targets/direct.jsonl")
    assert len(direct) == config.pairs
    assert all(r["completion"] == f"\n</think> {'true' if r['label'] else 'false'}" for r in direct)
    targets = json.loads((out / "targets/targets.json").read_text())
    chains = _jsonl(out / "targets/chains.jsonl")
    assert targets["chains"]["kept"] == len(chains) >= 1
    assert all(r["answer"] == ("true" if r["label"] else "false") for r in chains)  # the label-agreement filter
    assert all(r["completion"].split("</think>")[0].strip() for r in chains)  # each keeps a chain
    for arm in ("direct", "chains"):
        run = out / "train" / arm / "lr-0.001"
        assert (run / "adapter" / "adapter_config.json").is_file()
        rows = (run / "loss.csv").read_text().splitlines()
        assert rows[0] == "step,epoch,loss,answer_loss,learning_rate" and len(rows) == 2  # one step logged
        assert float(rows[1].split(",")[3]) > 0  # the answer token's own loss, apart from the chain's
        svg = (run / "loss.svg").read_text()
        assert svg.count("<polyline") == 2 and "answer token" in svg
    report = (out / "eval/top4/direct/report.html").read_text()
    assert "<svg" in report  # the per-query delta chart against BM25
    card = (out / "model-card.md").read_text()
    assert "## Data" in card and "## Limits" in card and "nDCG@10" in card


def test_no_test_claim_or_judgment_reaches_training(mini, data_dir):
    config, _, _ = mini
    out = config.output
    test = {json.loads(line)["_id"]: " ".join(json.loads(line)["text"].lower().split())
            for line in (data_dir / "scifact/queries.jsonl").read_text().splitlines()}
    train = {json.loads(line)["_id"]: " ".join(json.loads(line)["text"].lower().split())
             for line in (data_dir / "scifact/train/queries.jsonl").read_text().splitlines()}
    split = json.loads((out / "data/split.json").read_text())
    # Two training claims repeat a test claim word for word; they must be set apart.
    same_text = sorted(q for q, t in train.items() if t in set(test.values()))
    assert same_text and sorted(split["dropped_same_text_as_test"]) == same_text
    used = set(split["train"]) | set(split["dev"])
    assert not used & set(same_text) and not used & set(test) and not set(split["train"]) & set(split["dev"])
    for name in ("data/pairs.jsonl", "targets/direct.jsonl", "targets/chains.jsonl"):
        rows = _jsonl(out / name)
        assert {r["qid"] for r in rows} <= set(split["train"]), name  # dev claims are not trained on either
    assert set(_trec(out / "data/bm25-train.trec")[0]) == used
    with pytest.raises(InvalidInputError, match="test claims"):
        assert_no_test_leak(["0"], [next(iter(test.values())).upper()], test, "x")


def test_metrics_and_p_values_equal_a_plain_computation_from_the_run_files(mini, data_dir):
    from scipy.stats import ttest_rel

    config, _, _ = mini
    results = json.loads((config.output / "eval/results.json").read_text())
    qrels = _qrels(data_dir / "scifact/qrels.trec")
    for depth in config.depths:
        block = results["table"][f"top{depth}"]
        bm25, _ = _trec(config.output / f"eval/top{depth}/untrained/first-stage.trec")
        assert len(bm25) == config.test_queries and all(len(v) == depth for v in bm25.values())
        base = {q: _ndcg10(bm25[q], qrels[q]) for q in bm25}
        assert block["bm25"]["nDCG@10"] == pytest.approx(sum(base.values()) / len(base), abs=1e-9)
        for name, row in block["systems"].items():
            ranked, _ = _trec(config.output / f"eval/top{depth}/{name.replace('+', '-plus-')}/reranked.trec")
            assert {q: set(v) for q, v in ranked.items()} == {q: set(v) for q, v in bm25.items()}  # same candidates
            ndcg = {q: _ndcg10(ranked[q], qrels[q]) for q in ranked}
            recall = {q: _recall10(ranked[q], qrels[q]) for q in ranked}
            assert row["metrics"]["nDCG@10"] == pytest.approx(sum(ndcg.values()) / len(ndcg), abs=1e-9), name
            assert row["metrics"]["R@10"] == pytest.approx(sum(recall.values()) / len(recall), abs=1e-9), name
            qs = sorted(ndcg)
            diffs = [ndcg[q] - base[q] for q in qs]
            if len(set(diffs)) > 1:
                p = ttest_rel([ndcg[q] for q in qs], [base[q] for q in qs]).pvalue
                assert row["vs_bm25"]["nDCG@10"]["p_value"] == pytest.approx(p, rel=1e-9), name


def test_the_fused_run_is_the_interpolation_at_the_weight_fitted_on_dev(mini):
    config, _, _ = mini
    results = json.loads((config.output / "eval/results.json").read_text())
    depth = config.depths[-1]
    folder = config.output / f"eval/top{depth}"
    bm25_order, bm25 = _trec(folder / "direct/first-stage.trec")
    _, model = _trec(folder / "direct/reranked.trec")
    fused_order, _ = _trec(folder / "direct-plus-bm25/reranked.trec")
    w = results["fusion"]["direct"]["bm25_weight"]
    dev_curve = results["fusion"]["direct"]["dev_nDCG@10"]
    assert dev_curve[f"{w:g}"] == max(dev_curve.values())
    for q in bm25:
        def norm(s):
            lo, hi = min(s.values()), max(s.values())
            return {d: (v - lo) / (hi - lo) if hi > lo else 0.0 for d, v in s.items()}
        a, b = norm(bm25[q]), norm(model[q])
        expected = sorted(a, key=lambda d: (-(w * a[d] + (1 - w) * b[d]), bm25_order[q].index(d)))
        assert fused_order[q] == expected
    from thinkrank.datasets.runs import Run

    assert fuse(Run({"q": [("a", 2.0), ("b", 1.0)]}), Run({"q": [("a", 0.1), ("b", 0.9)]}), 1.0)["q"][0][0] == "a"


def test_the_model_folder_loads_in_rank1_and_scores_as_the_evaluation_did(mini, data_dir):
    from thinkrank.datasets import load_collection
    from thinkrank.rerankers.pointwise import Rank1

    config, _, _ = mini
    selection = json.loads((config.output / "train/selection.json").read_text())
    arms = selection["arms"]
    arm = max(arms, key=lambda a: arms[a]["candidates"]["0.001"]["dev"]["nDCG@10"])
    folder = config.output / f"eval/top{config.depths[-1]}/{arm}"
    _, scores = _trec(folder / "reranked.trec")
    qid = min(scores)
    test = load_collection(data_dir / "scifact")
    docs = [test.corpus[d] for d in scores[qid]]
    ranking = Rank1(str(config.output / "model"), "transformers", reasoning=False,
                    max_passage_tokens=PASSAGE_TOKENS, device="cpu").rerank(test.queries[qid], docs)
    for judgment in ranking:
        # Merged weights against base + adapter: the same function up to float rounding.
        assert judgment.score == pytest.approx(scores[qid][judgment.doc_id], abs=2e-4)


def test_a_second_run_skips_every_stage_and_other_settings_are_refused(mini, smollm2_path, data_dir):
    config, _, first_seconds = mini
    before = {p: p.stat().st_mtime_ns for p in config.output.rglob("*") if p.is_file()}
    again = run_recipe(config)
    assert again.skipped == ["data", "targets", "train", "evaluate", "model"] and not again.ran
    after = {p: p.stat().st_mtime_ns for p in config.output.rglob("*") if p.is_file() and p.name != "recipe.json"}
    assert all(before[p] == t for p, t in after.items())
    with pytest.raises(InvalidInputError, match="other settings .*pairs"):
        run_recipe(_config(smollm2_path, data_dir, config.output, pairs=9))
    with pytest.raises(InvalidInputError, match="dev at BM25 depth 2; .* --depths 2,4"):
        run_recipe(_config(smollm2_path, data_dir, config.output, depths=(3, 4)))
    # A run folder written before a setting existed was made under that setting's default.
    saved = json.loads((config.output / "recipe.json").read_text())
    del saved["finetune"]
    (config.output / "recipe.json").write_text(json.dumps(saved))
    assert not run_recipe(config).ran
    with pytest.raises(InvalidInputError, match="other settings .*finetune"):
        run_recipe(_config(smollm2_path, data_dir, config.output, finetune="full"))
    print(f"miniature recipe: {first_seconds:.1f}s")


def test_more_depths_or_learning_rates_later_redo_only_what_they_change(smollm2_path, data_dir, tmp_path):
    """A finished run asked for one more depth evaluates again from its judgment cache: the new
    depth's extra pairs are the only ones scored, and results, tables and model card name it.
    Asked for one more learning rate, it trains that one alone and chooses again."""
    import sqlite3

    config = _config(smollm2_path, data_dir, tmp_path / "run", depths=(2,), arms=("direct",))
    run_recipe(config)

    def cached():
        with sqlite3.connect(config.output / "eval" / "judgments.sqlite") as db:
            return db.execute("select count(*) from entries").fetchone()[0]

    before = cached()
    assert before == 2 * 2 * 2  # untrained and direct, 2 test claims x top 2
    train = {p: p.stat().st_mtime_ns for p in (config.output / "train").rglob("*") if p.is_file()}
    again = run_recipe(_config(smollm2_path, data_dir, config.output, depths=(2, 4), arms=("direct",)))
    assert again.ran == ["evaluate", "model"] and again.skipped == ["data", "targets", "train"]
    assert cached() == 2 * 2 * 4  # only the pairs at ranks 3-4 were added
    assert {p: p.stat().st_mtime_ns for p in (config.output / "train").rglob("*") if p.is_file()} == train
    results = json.loads((config.output / "eval" / "results.json").read_text())
    assert results["depths"] == [2, 4] and set(results["table"]) == {"top2", "top4"}
    assert "top4" in (config.output / "model" / "README.md").read_text()

    # One more learning rate later: only it is trained; the dev choice, evaluation and model are
    # redone, and the first run's files are left as they were.
    first = {p: p.stat().st_mtime_ns for p in (config.output / "train" / "direct" / "lr-0.001").rglob("*")
             if p.is_file() and p.suffix not in (".csv", ".svg", ".trec")}  # curve and dev run are redrawn from the log and cache
    more = run_recipe(_config(smollm2_path, data_dir, config.output, depths=(2, 4), arms=("direct",),
                              learning_rates=(1e-3, 2e-3)))
    assert more.ran == ["train", "evaluate", "model"] and more.skipped == ["data", "targets"]
    assert {p: p.stat().st_mtime_ns for p in first} == first
    assert (config.output / "train" / "direct" / "lr-0.002" / "result.json").exists()
    chosen = json.loads((config.output / "train" / "selection.json").read_text())["arms"]["direct"]
    assert set(chosen["candidates"]) == {"0.001", "0.002"}
    assert cached() == 2 * 2 * 4  # both runs are the base model after one warm-up step: the same choice, no new pair
    assert json.loads((config.output / "recipe.json").read_text())["learning_rates"] == [1e-3, 2e-3]


def test_full_fine_tuning_scores_the_trained_model_itself_and_the_card_says_so(smollm2_path, data_dir, tmp_path):
    from safetensors.torch import load_file

    config = _config(smollm2_path, data_dir, tmp_path / "run", depths=(2,), arms=("direct",), finetune="full",
                     max_steps=2)  # step 1 is warm-up at rate 0
    run_recipe(config)
    run = config.output / "train/direct/lr-0.001"
    candidate = json.loads((config.output / "train/selection.json").read_text())["arms"]["direct"]["candidates"]["0.001"]
    assert candidate["adapter"] is None and candidate["model"] == str(run / "model")
    assert not (run / "adapter").exists() and not (run / "merged").exists()
    # Every weight trained, not only those LoRA adapts: the final norm moved too.
    base, tuned = load_file(smollm2_path / "model.safetensors"), load_file(config.output / "model/model.safetensors")
    assert not torch.equal(base["model.norm.weight"], tuned["model.norm.weight"].to(base["model.norm.weight"].dtype))
    assert "Full fine-tuning of every weight" in (config.output / "model/README.md").read_text()


@pytest.mark.parametrize(("change", "message"), [
    ({"dtype": "fp8"}, "dtype must be auto, bfloat16 or float32, got 'fp8'"),
    ({"depths": (0,)}, "depths must be >= 1"),
    ({"arms": ("direct", "rl")}, "arms must be some of direct, chains"),
])
def test_a_bad_setting_is_refused_before_anything_runs(smollm2_path, data_dir, tmp_path, change, message):
    config = _config(smollm2_path, data_dir, tmp_path / "run", **change)
    with pytest.raises(InvalidInputError, match=message):
        run_recipe(config)
    assert not (tmp_path / "run").exists()


def test_dtype_reaches_every_stage_that_loads_the_model(smollm2_path, data_dir, tmp_path):
    import torch

    from thinkrank.recipes.fit import train_config
    from thinkrank.recipes.scoring import reranker

    config = _config(smollm2_path, data_dir, tmp_path / "run", dtype="bfloat16")
    assert reranker(smollm2_path, config).engine.model.dtype == torch.bfloat16
    assert train_config(config, "direct", tmp_path / "d.jsonl", 1e-3, tmp_path / "t").dtype == "bfloat16"
    auto = _config(smollm2_path, data_dir, tmp_path / "run", dtype="auto")
    assert reranker(smollm2_path, auto).engine.model.dtype == torch.float32  # auto on CPU
