"""thinkrank's PyTerrier transformer side by side with pyterrier_genrank's ``Rank1Reranker``,
on one vLLM instance: the same model, DL19 frame (BM25 top ``--pairs`` of ``--queries`` queries),
think budget and greedy decoding, each run as a PyTerrier pipeline ``first_stage >> reranker``.

* ``genrank``: ``Rank1Reranker`` from pyterrier_genrank's ``rerank/__init__.py``, read from the
  checkout given with ``--genrank`` (fetch the repository; its code is not part of thinkrank) and
  run as released, except: only that class is executed (the module's other classes import
  fastchat, openai and friends that ``Rank1Reranker`` does not use), and ``LLM`` in its namespace
  returns the shared instance (its own arguments would load the same model again). It reranks one
  query at a time (``pta.transform.by_query``).
* ``thinkrank``: ``ThinkrankReranker(model, engine=VLLMEngine(llm), think_budget=B)``: every pair
  of the frame in one ``rerank_many``.

Routes alternate (order rotated each repetition); the table gives the median wall time. Scores
are compared on the pairs where both follow the same rule: genrank did not fall back to 0.5 (its
answer read failed) and its chain closed by itself (thinkrank and genrank close a cut chain the
same way, but genrank then reads the answer from a 20-token top list).

    VLLM_CPU_KVCACHE_SPACE=1 python benchmarks/bench_pyterrier.py --genrank /path/to/pyterrier_genrank \\
        --queries 4 --pairs 8 --budget 32 --reps 3
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import math
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "dl19"


def dl19_frame(data: Path, queries: int, pairs: int) -> tuple[Any, Any]:
    """Topics and the BM25 top ``pairs`` (with text) of the first ``queries`` judged DL19 queries."""
    import pandas as pd
    import pyterrier as pt

    qrels = pt.io.read_qrels(str(data / "qrels.trec"))
    topics = pd.read_json(data / "queries.jsonl", lines=True, dtype={"_id": str})
    topics = topics.rename(columns={"_id": "qid", "text": "query"})
    topics = topics[topics.qid.isin(set(qrels.qid))].head(queries).reset_index(drop=True)
    run = pt.io.read_results(str(data / "runs" / "bm25.trec"))
    run = run[run.qid.isin(set(topics.qid)) & (run["rank"] <= pairs)].assign(rank=lambda r: r["rank"] - 1)
    corpus = pd.read_json(data / "corpus.jsonl", lines=True, dtype={"_id": str}).rename(columns={"_id": "docno"})
    run = run.drop(columns=["name"]).merge(corpus[["docno", "text"]], on="docno")
    return topics, run


def load_genrank(checkout: Path, llm: Any) -> type:
    """``Rank1Reranker`` from the genrank checkout, executed alone, ``LLM`` giving ``llm``."""
    import pandas as pd
    import pyterrier as pt
    import pyterrier_alpha as pta
    import torch
    from transformers import AutoTokenizer
    from vllm import SamplingParams

    source = (checkout / "rerank" / "__init__.py").read_text()
    tree = ast.parse(source)
    (node,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Rank1Reranker"]
    namespace: dict[str, Any] = {"torch": torch, "math": math, "pt": pt, "pta": pta, "pd": pd,
                                 "AutoTokenizer": AutoTokenizer, "SamplingParams": SamplingParams,
                                 "LLM": lambda **kwargs: llm, "__name__": "genrank_rank1"}
    exec(compile(ast.Module([node], type_ignores=[]), str(checkout / "rerank" / "__init__.py"), "exec"), namespace)
    return namespace["Rank1Reranker"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--genrank", type=Path, required=True, help="a checkout of emory-irlab/pyterrier_genrank")
    ap.add_argument("--queries", type=int, default=4)
    ap.add_argument("--pairs", type=int, default=8, help="BM25 candidates per query")
    ap.add_argument("--budget", type=int, default=32)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--data", type=Path, default=DATA, help="the DL19 folder (default: shared/data/dl19)")
    args = ap.parse_args()

    import pyterrier as pt
    from vllm import LLM

    from thinkrank.engines.vllm import CPU_BLOCK_SIZE, VLLMEngine
    from thinkrank.integrations.pyterrier import ThinkrankReranker
    from thinkrank.testing import smollm2_dir

    model = str(smollm2_dir())
    topics, run = dl19_frame(args.data, args.queries, args.pairs)
    first = pt.Transformer.from_df(run)
    start = time.perf_counter()
    llm = LLM(model=model, dtype="float32", max_model_len=4096, enable_prefix_caching=True, block_size=CPU_BLOCK_SIZE)
    print(f"# vLLM loaded in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    genrank = load_genrank(args.genrank, llm)(model, context_size=4096, max_output_tokens=args.budget,
                                              fp_options="float32")
    thinkrank = ThinkrankReranker(model, engine=VLLMEngine(llm), think_budget=args.budget)
    ThinkrankReranker(model, engine=thinkrank.reranker.engine, think_budget=4)(first(topics.head(1)).head(2))  # warm-up
    pipelines = {"genrank": first >> genrank, "thinkrank": first >> thinkrank}
    seconds: dict[str, list[float]] = {name: [] for name in pipelines}
    outputs: dict[str, Any] = {}
    calls: dict[str, int] = {}
    for rep in range(args.reps):
        names = list(pipelines)[rep % 2:] + list(pipelines)[: rep % 2]
        for name in names:
            counted = _count_generate(llm)
            log = io.StringIO()
            t = time.perf_counter()
            with contextlib.redirect_stdout(log):
                outputs[name] = pipelines[name](topics)
            seconds[name].append(time.perf_counter() - t)
            calls[name] = counted()
    report(args, seconds, outputs, calls)


def _count_generate(llm: Any) -> Any:
    """Count ``llm.generate`` calls until the returned function is called (which restores it)."""
    original, count = llm.generate, [0]

    def generate(*a: Any, **k: Any) -> Any:
        count[0] += 1
        return original(*a, **k)

    llm.generate = generate

    def done() -> int:
        llm.generate = original
        return count[0]

    return done


def report(args: Any, seconds: dict[str, list[float]], outputs: dict[str, Any], calls: dict[str, int]) -> None:
    pairs = len(outputs["thinkrank"])
    print(f"\n# {args.queries} DL19 queries x BM25 top {args.pairs} = {pairs} pairs, budget {args.budget}, "
          f"SmolLM2-135M float32, vLLM CPU, {args.reps} reps, {platform.processor() or platform.machine()}\n")
    print("| reranker (PyTerrier pipeline) | seconds (median) | runs | LLM.generate calls | columns out |")
    print("|---|---|---|---|---|")
    for name, runs in seconds.items():
        extra = sorted(set(outputs[name].columns) - {"qid", "query", "docno", "text"})
        print(f"| {name} | {statistics.median(runs):.2f} | {' '.join(f'{s:.1f}' for s in runs)} | {calls[name]} | "
              f"{', '.join(extra)} |")
    g = outputs["genrank"].set_index(["qid", "docno"]).score
    tr = outputs["thinkrank"].set_index(["qid", "docno"])
    both = [k for k in g.index if g[k] != 0.5 and not tr.forced[k]]
    diff = max((abs(g[k] - tr.score[k]) for k in both), default=float("nan"))
    agree = sum((g[k] >= 0.5) == (tr.score[k] >= 0.5) for k in both)
    print(f"\nscores on the {len(both)} of {pairs} pairs where both follow the same rule: answers agree on {agree}, "
          f"largest difference {diff:.1e}; genrank fell back to 0.5 on {int((g == 0.5).sum())}, "
          f"thinkrank forced {int(tr.forced.sum())} answers")


if __name__ == "__main__":
    main()
