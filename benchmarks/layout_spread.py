"""How far float32 Rank1 scores of the same pairs move with the engine call's batch layout.

    nice -n 5 python benchmarks/layout_spread.py --models smollm2                     # 32 pairs, batches 1-32
    nice -n 5 python benchmarks/layout_spread.py --models qwen --candidates 32 \
        --batches 1 2 3 4 8 16 32 64 --reasoning-batches 1 4 64                         # 64 pairs, batches 1-64

The same pairs (real DL19 queries and BM25 candidates, cut to 2 to 40 words so rows pad
differently) are scored on the transformers engine,
float32, CPU, in every layout a test may compare: batch sizes 1 to 32 or 64, the query's shared
prefix prefilled once or every prompt prefilled whole, reasoning off and reasoning on with a
short think budget, each in a fresh process with ``OMP_NUM_THREADS`` 1 and 2 (the thread counts
CI may have; Ray's workers set 1). Two models: SmolLM2-135M-Instruct (30 layers, real weights)
and a random-weight Qwen2.5-shaped model (``thinkrank.testing.tiny_qwen_dir``).

For each pair, the spread is the largest minus the smallest value over all layouts; the table
gives the largest spread over the pairs, for the score, p(true) and p(false), and the answer
log-probs. A reasoning-on pair whose chain differs between layouts (greedy decoding picked
another token at a near-tie) is counted apart and left out of the spreads: a different chain is
a different judgment, not rounding. ``tests/tolerances.py`` takes its tolerance from the result.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from routes import dl19_requests  # noqa: E402

from thinkrank import Rank1  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "dl19"
BATCHES = (1, 2, 3, 4, 8, 16, 32)
REASONING_BATCHES = (1, 4, 32)  # a generation pass costs more: the layouts' extremes and one between
THREADS = (1, 2)
FIELDS = ("score", "p_true", "p_false", "logprob")


class WholePrompts(Rank1):
    """Rank1 declaring no shared query prefix: every prompt (and every request) prefilled whole."""

    def _prepare(self, pair: Any) -> Any:
        return replace(super()._prepare(pair), head="")


def _varied(requests: list[tuple[str, list[str]]], most: int) -> list[tuple[str, list[str]]]:
    """Passages cut to lengths from 2 to ``most`` words, so the rows of a batch pad differently
    (as in the tests' short documents); the cut depends on the passage's position only."""
    return [(q, [" ".join(p.split()[: 2 + (7 * i) % (most - 1)]) for i, p in enumerate(ps)]) for q, ps in requests]


def _engine(model: str) -> Any:
    from thinkrank.engines.transformers import TransformersEngine
    from thinkrank.testing import smollm2_dir, tiny_qwen_dir

    path = smollm2_dir() if model == "smollm2" else tiny_qwen_dir()
    return TransformersEngine(str(path), device="cpu", dtype="float32")


def worker(args: argparse.Namespace) -> None:
    """One thread count: every layout's judgments, as JSON on stdout."""
    import torch

    requests = _varied(dl19_requests(DATA, args.queries, args.candidates), args.passage_words)
    out: dict[str, Any] = {"threads": torch.get_num_threads(), "layouts": {}}
    for model in args.models:
        engine = _engine(model)
        for reasoning in (False, True):
            for shared in (True, False):
                cls = Rank1 if shared else WholePrompts
                reranker = cls(engine=engine, reasoning=reasoning, think_budget=args.budget)
                for batch in args.reasoning_batches if reasoning else args.batches:
                    engine.batch_size = batch
                    rankings = reranker.rerank_many(requests)
                    rows = [[j.score, j.p_true, j.p_false, j.reasoning]
                            for r in rankings for j in sorted(r, key=lambda j: j.index)]
                    key = f"{model}|{'on' if reasoning else 'off'}|{'shared' if shared else 'whole'}|{batch}"
                    out["layouts"][key] = rows
    json.dump(out, sys.stdout)


def _spreads(runs: list[dict[str, Any]], model: str, reasoning: str) -> tuple[dict[str, float], int, int, int]:
    """Largest per-pair spread of each field over every layout of ``model`` / ``reasoning``,
    the number of pairs left out for a differing chain, the pairs and the layouts compared."""
    layouts = [rows for run in runs for key, rows in run["layouts"].items()
               if key.startswith(f"{model}|{reasoning}|")]
    spread = dict.fromkeys(FIELDS, 0.0)
    diverged = 0
    for pair in zip(*layouts):
        if len({row[3] for row in pair}) > 1:
            diverged += 1
            continue
        for n, field in enumerate(("score", "p_true", "p_false")):
            values = [row[n] for row in pair]
            spread[field] = max(spread[field], max(values) - min(values))
        lt, lf = [math.log(r[1]) for r in pair], [math.log(r[2]) for r in pair]
        spread["logprob"] = max(spread["logprob"], max(lt) - min(lt), max(lf) - min(lf))
    return spread, diverged, len(layouts[0]) if layouts else 0, len(layouts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["smollm2", "qwen"], choices=["smollm2", "qwen"])
    ap.add_argument("--queries", type=int, default=2)
    ap.add_argument("--candidates", type=int, default=16, help="per query (2 x 16 = 32 pairs: one full batch of 32)")
    ap.add_argument("--passage-words", type=int, default=40, help="passages cut to 2..this many words (bounds time)")
    ap.add_argument("--budget", type=int, default=4, help="think budget of the reasoning-on layouts")
    ap.add_argument("--batches", type=int, nargs="+", default=list(BATCHES))
    ap.add_argument("--reasoning-batches", type=int, nargs="+", default=list(REASONING_BATCHES))
    ap.add_argument("--threads", type=int, nargs="+", default=list(THREADS))
    ap.add_argument("--keep", type=Path, help="folder keeping each thread count's judgments; a rerun reuses them")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    started = time.time()
    runs = []
    for threads in args.threads:
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        cmd = [sys.executable, __file__, "--worker", "--models", *args.models, "--queries", str(args.queries),
               "--candidates", str(args.candidates), "--passage-words", str(args.passage_words),
               "--budget", str(args.budget), "--batches", *map(str, args.batches),
               "--reasoning-batches", *map(str, args.reasoning_batches)]
        kept = args.keep / f"threads-{threads}.json" if args.keep else None
        if kept and kept.exists():  # a run cut short on a busy machine resumes from its finished workers
            runs.append(json.loads(kept.read_text()))
            continue
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if done.returncode:
            sys.exit(f"worker with {threads} threads failed:\n{done.stderr}")
        runs.append(json.loads(done.stdout))
        if kept:
            kept.parent.mkdir(parents=True, exist_ok=True)
            kept.write_text(done.stdout)
    import torch
    import transformers

    print(f"threads {[r['threads'] for r in runs]} x shared prefix on/off x batch sizes {args.batches} (reasoning "
          f"off) or {args.reasoning_batches} (reasoning on, think budget {args.budget}); {args.queries} DL19 queries "
          f"x {args.candidates} candidates, passages of 2 to {args.passage_words} words; float32, cpu, torch "
          f"{torch.__version__}, transformers "
          f"{transformers.__version__}; {time.time() - started:.0f} s\n")
    print("| model | reasoning | pairs | layouts | chains differ | max spread: score | p(true) | p(false) | log-prob |")
    print("|---|---|---|---|---|---|---|---|---|")
    worst = 0.0
    for model in args.models:
        for reasoning in ("off", "on"):
            spread, diverged, pairs, layouts = _spreads(runs, model, reasoning)
            worst = max(worst, spread["score"], spread["p_true"], spread["p_false"])
            print(f"| {model} | {reasoning} | {pairs} | {layouts} | {diverged} | {spread['score']:.2e} | "
                  f"{spread['p_true']:.2e} | {spread['p_false']:.2e} | {spread['logprob']:.2e} |")
    print(f"\nlargest spread of a score or probability over all layouts: {worst:.2e}")


if __name__ == "__main__":
    main()
