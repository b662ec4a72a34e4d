"""What committing every engine batch to the judgment cache costs, against committing every 64.

Two measurements:

1. Storage alone: ``JudgmentCache.put`` of N judgments (each with a ~2 KB reasoning chain, as
   real ones have) in commits of 1, 8, 32 and 64; each commit is a durable WAL transaction
   (``synchronous=FULL``: an fsync per commit).
2. End to end: Rank1 over the same N DL19 pairs through ``CachedReranker``, chunk = the engine's
   batch (the default now) against chunk = 64 (the old default), on a fresh cache each time.
   Smaller chunks also give the engine fewer rows to sort by length, so this includes that cost.

    python benchmarks/bench_cache_commit.py --pairs 64 --budget 32

The model is SmolLM2-135M (``thinkrank.testing``); pass ``--device cuda`` on a GPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

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


def end_to_end(engine: TransformersEngine, query: str, passages: list[str], budget: int, chunk: int | None,
               folder: Path) -> tuple[float, int]:
    with JudgmentCache(folder / f"e2e-{chunk}-{time.perf_counter_ns()}.sqlite") as cache:
        cached = CachedReranker(Rank1(engine=engine, think_budget=budget), cache, chunk_size=chunk)
        start = time.perf_counter()
        cached.rerank(query, passages)
        return time.perf_counter() - start, cached.chunk_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--budget", type=int, default=32)
    parser.add_argument("--storage-judgments", type=int, default=2048)
    parser.add_argument("--device", default="cpu")
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
    end_to_end(engine, query, passages[:4], 4, None, folder)  # warm-up
    for chunk in (None, 64, None, 64):  # interleaved, so drift on a shared machine hits both
        seconds, used = end_to_end(engine, query, passages, args.budget, chunk, folder)
        rows["end_to_end"].setdefault(str(used), []).append(seconds)
    print(f"storage: {args.storage_judgments} judgments (~2 KB each), durable commits ({rows['machine']})")
    print("| judgments per commit | total s | ms per commit | µs per judgment |\n|---|---|---|---|")
    for chunk, r in rows["storage"].items():
        print(f"| {chunk} | {r['seconds']:.3f} | {r['ms_per_commit']:.2f} | {r['us_per_judgment']:.0f} |")
    print(f"\nend to end: Rank1 SmolLM2-135M, {args.pairs} DL19 pairs, think budget {args.budget}, "
          f"engine batch {engine.batch_size}")
    print("| chunk (pairs per commit) | runs (s) | best s |\n|---|---|---|")
    for chunk, times in rows["end_to_end"].items():
        print(f"| {chunk} | {', '.join(f'{t:.1f}' for t in times)} | {min(times):.1f} |")
    if args.output:
        args.output.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
