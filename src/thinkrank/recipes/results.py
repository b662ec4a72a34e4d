"""Stage 4, evaluation on the SciFact test claims (their judgments are read here for the first
time), and stage 5, the model card.

For each depth, BM25's top candidates are reranked by the untrained model and by each trained
arm (the dev-chosen learning rate), and each arm is also fused with BM25 at the weight the dev
split chose. Every system is compared with BM25 and with the untrained model by paired tests
over queries; each gets ``eval/top{depth}/{system}/`` with the standard evaluation outputs
(report.html with the per-query delta chart against BM25, metrics.json, reranked.trec).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from thinkrank.datasets.collection import Collection, load_collection
from thinkrank.datasets.runs import Run, read_trec_run
from thinkrank.evaluation.metrics import evaluate_run, paired_test
from thinkrank.evaluation.runner import Evaluation, write_outputs
from thinkrank.recipes.card import model_card
from thinkrank.recipes.config import RecipeConfig
from thinkrank.recipes.scoring import MEASURES, fit_weight, fuse, rerank


def test_set(config: RecipeConfig) -> tuple[Collection, Run, list[str]]:
    """The test collection, BM25's run over its judged claims, and the claims evaluated."""
    from thinkrank.retrieval.bm25 import bm25_run

    test = load_collection(config.data).judged()
    qids = list(test.queries)[: config.test_queries]
    run = bm25_run(test, max(config.depths), queries={q: test.queries[q] for q in qids})
    return test, run, qids


def evaluate_all(config: RecipeConfig, selection: dict[str, Any], dev: Collection, dev_run: Run,
                 folder: Path) -> dict[str, Any]:
    """Score every system at every depth; write the outputs and ``results.json``/``results.md``."""
    test, run, qids = test_set(config)
    cache = folder / "judgments.sqlite"
    systems: dict[str, dict[int, Evaluation]] = {"untrained": rerank(config.model, test, run, qids, config.depths, config, cache)}
    fusion = {}
    for arm, chosen in selection["arms"].items():
        systems[arm] = rerank(chosen["model"], test, run, qids, config.depths, config, cache)
        dev_scores = read_trec_run(Path(chosen["model"]).parent / f"dev-top{selection['dev_depth']}.trec")
        weight, curve = fit_weight(dev_run, dev_scores, dev.qrels, list(config.fusion_weights))
        fusion[arm] = {"bm25_weight": weight, "dev_nDCG@10": curve}
        systems[f"{arm}+bm25"] = {d: fused_evaluation(e, weight) for d, e in systems[arm].items()}
    table: dict[str, Any] = {}
    for depth in config.depths:
        rows = {}
        base = systems["untrained"][depth]
        assert base.reranked_metrics is not None and base.first_metrics is not None
        for name, by_depth in systems.items():
            ev = by_depth[depth]
            write_outputs(ev, folder / f"top{depth}" / name.replace("+", "-plus-"))
            assert ev.reranked_metrics is not None and ev.first_metrics is not None
            rows[name] = {
                "metrics": ev.reranked_metrics.aggregate,
                "vs_bm25": {m: vars(t) for m, t in ev.tests.items()},
                "vs_untrained": {} if name == "untrained" else {
                    m: vars(paired_test(base.reranked_metrics, ev.reranked_metrics, m)) for m in MEASURES},
            }
        table[f"top{depth}"] = {"bm25": base.first_metrics.aggregate, "systems": rows}
    results = {"queries": len(qids), "depths": list(config.depths), "fusion": fusion, "table": table}
    (folder / "results.md").write_text(results_markdown(results))
    (folder / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def fused_evaluation(ev: Evaluation, weight: float) -> Evaluation:
    """``ev`` with its reranked run replaced by the fusion with its first stage, re-scored and re-tested."""
    assert ev.reranked is not None
    fused = fuse(ev.first_stage, ev.reranked, weight, f"{ev.reranked.name}+bm25")
    metrics = evaluate_run(fused, ev.qrels, MEASURES, missing_as_zero=True)
    assert ev.first_metrics is not None
    tests = {m: paired_test(ev.first_metrics, metrics, m) for m in ev.first_metrics.measures}
    # rankings={}: the report then lists each query's candidates in BM25 order with the fused scores' chart.
    return replace(ev, reranked=fused, reranked_metrics=metrics, tests=tests, rankings={},
                   settings={**(ev.settings or {}), "fusion_bm25_weight": weight})


def results_markdown(results: dict[str, Any]) -> str:
    lines = [f"Test claims: {results['queries']}. p: paired t-test over queries (permutation test in brackets).", ""]
    for depth, block in results["table"].items():
        lines += [f"### BM25 {depth} reranked", "",
                  "| system | nDCG@10 | p vs BM25 | p vs untrained | R@10 | p vs BM25 |", "|---|---|---|---|---|---|",
                  f"| BM25 | {block['bm25']['nDCG@10']:.4f} | | | {block['bm25']['R@10']:.4f} | |"]
        for name, row in block["systems"].items():
            n, r = row["vs_bm25"]["nDCG@10"], row["vs_bm25"]["R@10"]
            u = row["vs_untrained"].get("nDCG@10")
            lines.append(f"| {name} | {row['metrics']['nDCG@10']:.4f} | {_p(n)} | {_p(u) if u else ''} | "
                         f"{row['metrics']['R@10']:.4f} | {_p(r)} |")
        lines.append("")
    return "\n".join(lines)


def _p(test: dict[str, Any]) -> str:
    perm = test.get("permutation_p_value")
    return f"{test['p_value']:.3g}" + (f" ({perm:.3g})" if perm is not None else "")


def write_model(config: RecipeConfig, selection: dict[str, Any], results: dict[str, Any], output: Path) -> Path:
    """Copy the merged weights of the arm the dev split ranks best into ``output`` (``model/``, the
    format every thinkrank loader reads) with its model card (``README.md``), and the same card beside it
    as ``model-card.md``."""
    arms = selection["arms"]
    arm = max(arms, key=lambda a: arms[a]["candidates"][f"{arms[a]['chosen_lr']:g}"]["dev"]["nDCG@10"])
    tmp = output.with_name(output.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(arms[arm]["model"], tmp)  # the merged weights the evaluation scored
    card = model_card(config, selection, results, arm)
    (tmp / "README.md").write_text(card)
    shutil.rmtree(output, ignore_errors=True)
    tmp.rename(output)
    (output.parent / "model-card.md").write_text(card)
    return output
