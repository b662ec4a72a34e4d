"""What committing the judgment cache per engine batch costs, and what the chunk size costs.

Two measurements:

1. Storage alone: ``JudgmentCache.put`` of N judgments (each with a ~2 KB reasoning chain, as
   real ones have) in commits of 1, 8, 32 and 64; each commit is a durable WAL transaction
   (``synchronous=FULL``: an fsync per commit).
2. End to end: Rank1 over the same N DL19 pairs through ``CachedReranker``, on a fresh cache
   each time, three ways:

   * ``chunk=batch``: chunks of one engine batch (the previous default): a commit per batch,
     but the engine sorts only one batch's pairs by length;
   * ``chunk=64, commit per batch`` (the default now): the engine sorts 64 pairs by length and
     Rank1 reports each finished engine batch, which is committed at once;
   * ``chunk=64, commit per chunk``: the same chunk committed once when it is done (the old
     ``--chunk-size 64``), so the cost of the per-batch commits shows on its own.

   Each arm reports CPU seconds of this process (the machine may be shared; CPU time is what
   the work cost), wall seconds, commits, and prompt tokens the engine prefilled with padding.

    OMP_NUM_THREADS=1 python benchmarks/bench_cache_commit.py --pairs 32 --budget 16

The model is SmolLM2-135M (``thinkrank.testing``); pass ``--device cuda`` on a GPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from thinkrank import Rank1
from thinkrank.cache import JudgmentCache
from thinkrank.rerankers.cached import CachedReranker
from thinkrank.engines.transformers import TransformersEngine
from thinkrank.testing import smollm2_dir

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "dl19"


def storage(n: int, chunk: int, folder: Path) -> float:
    value = {"score": 0.5, "reasoning": "a chain of thought " * 110, "answer": "true", "prompt_tokens": 300}
    with JudgmentCache(folder / f"storage-{chunk}.sqlite") as cache:
        start = time.perf_counter()
        for i in range(0, n, chunk):
            cache.put("pointwise", {"m": 1}, [(f"k{j}", value) for j in range(i, min(i + chunk, n))])
        return time.perf_counter() - start


class _CountingCache(JudgmentCache):
    """A judgment cache that counts its commits (one ``put`` is one transaction)."""

    commits = 0

    def put(self, *args: Any, **kwargs: Any) -> None:
        self.commits += 1
        super().put(*args, **kwargs)


class _CommitPerChunk:
    """Rank1 without per-batch reports: ``judge_with_cache`` commits each chunk once, when it is done."""

    def __init__(self, reranker: Rank1) -> None:
        self.reranker, self.engine = reranker, reranker.engine

    @property
    def settings(self) -> dict[str, Any]:
        return self.reranker.settings

    def judge(self, pairs: Any) -> Any:
        return self.reranker.judge(pairs)


class _PaddedTokens:
    """Counts the padded prompt tokens of each prefill (batch rows x widest prompt) by wrapping
    the engine's batching, which is where padding is decided."""

    def __init__(self, engine: TransformersEngine) -> None:
        self.engine, self.tokens = engine, 0
        self._batches = engine._batches

    def __enter__(self) -> _PaddedTokens:
        def counted(lengths: Any, extra: Any, groups: Any = None) -> list[list[int]]:
            batches = self._batches(lengths, extra, groups)
            self.tokens += sum(len(b) * max(lengths[i] for i in b) for b in batches)
            return batches

        self.engine._batches = counted  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: Any) -> None:
        del self.engine._batches  # back to the class's method


ARMS = ("chunk=batch", "chunk=64, commit per batch", "chunk=64, commit per chunk")


def end_to_end(engine: TransformersEngine, query: str, passages: list[str], budget: int, arm: str,
               folder: Path) -> dict[str, float]:
    with _CountingCache(folder / f"e2e-{time.perf_counter_ns()}.sqlite") as cache:
        rank1 = Rank1(engine=engine, think_budget=budget)
        chunk = engine.batch_size if arm == "chunk=batch" else 64
        inner: Any = _CommitPerChunk(rank1) if arm.endswith("per chunk") else rank1
        cached = CachedReranker(inner, cache, chunk_size=chunk)
        with _PaddedTokens(engine) as padded:
            wall, cpu = time.perf_counter(), time.process_time()
            cached.rerank(query, passages)
            return {"cpu_s": time.process_time() - cpu, "wall_s": time.perf_counter() - wall,
                    "commits": cache.commits, "padded_prompt_tokens": padded.tokens}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--budget", type=int, default=32)
    parser.add_argument("--storage-judgments", type=int, default=2048)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved runs of each end-to-end arm")
    parser.add_argument("--output", type=Path, default=None, help="also write the results as JSON here")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-cache-"))
    rows = {"machine": f"{platform.processor() or platform.machine()}, {args.device}", "storage": {}, "end_to_end": {}}
    for chunk in (1, 8, 32, 64):
        seconds = storage(args.storage_judgments, chunk, folder)
        commits = -(-args.storage_judgments // chunk)
        rows["storage"][chunk] = {"seconds": seconds, "ms_per_commit": 1000 * seconds / commits,
                                  "us_per_judgment": 1e6 * seconds / args.storage_judgments}
    engine = TransformersEngine(str(smollm2_dir()), device=args.device)
    query = json.loads((DATA / "queries.jsonl").read_text().splitlines()[0])["text"]
    passages = [json.loads(line)["text"] for line in (DATA / "corpus.jsonl").read_text().splitlines()[: args.pairs]]
    end_to_end(engine, query, passages[:4], 4, ARMS[0], folder)  # warm-up
    for _ in range(args.repeats):  # interleaved, so drift on a shared machine hits every arm
        for arm in ARMS:
            rows["end_to_end"].setdefault(arm, []).append(end_to_end(engine, query, passages, args.budget, arm, folder))
    print(f"storage: {args.storage_judgments} judgments (~2 KB each), durable commits ({rows['machine']})")
    print("| judgments per commit | total s | ms per commit | µs per judgment |\n|---|---|---|---|")
    for chunk, r in rows["storage"].items():
        print(f"| {chunk} | {r['seconds']:.3f} | {r['ms_per_commit']:.2f} | {r['us_per_judgment']:.0f} |")
    print(f"\nend to end: Rank1 SmolLM2-135M, {args.pairs} DL19 pairs, think budget {args.budget}, "
          f"engine batch {engine.batch_size}")
    print("| arm | commits | padded prompt tokens | CPU s (runs) | best CPU s | wall s (runs) |\n|---|---|---|---|---|---|")
    for arm, runs in rows["end_to_end"].items():
        cpu = ", ".join(f"{r['cpu_s']:.1f}" for r in runs)
        wall = ", ".join(f"{r['wall_s']:.1f}" for r in runs)
        best = min(r["cpu_s"] for r in runs)
        print(f"| {arm} | {runs[0]['commits']} | {runs[0]['padded_prompt_tokens']} | {cpu} | {best:.1f} | {wall} |")
    if args.output:
        args.output.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
