"""What the Rank1 cascade spends and keeps: chains and tokens per query at top-m 10/20/30,
against full reasoning on every candidate, on real DL19 queries and BM25 candidates.

    python benchmarks/bench_cascade.py --queries 2 --candidates 100 --budget 32

The model is the real SmolLM2-135M-Instruct (offline test model), so chains end on their own
and token counts vary: the numbers show the cascade's accounting and how far its top-10 agrees
with full reasoning's, not Rank1's quality (SmolLM2 is not a trained reranker).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from routes import dl19_requests  # noqa: E402

from thinkrank import Rank1  # noqa: E402
from thinkrank.engines.transformers import TransformersEngine  # noqa: E402
from thinkrank.rerankers.cascade import cascade_stats  # noqa: E402
from thinkrank.testing import smollm2_dir  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "dl19"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--queries", type=int, default=2)
    ap.add_argument("--candidates", type=int, default=100)
    ap.add_argument("--budget", type=int, default=32)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--top-m", default="10,20,30")
    args = ap.parse_args()
    engine = TransformersEngine(str(smollm2_dir()), device="cpu", batch_size=args.batch)
    requests = dl19_requests(DATA, args.queries, args.candidates)

    warm = [(requests[0][0], requests[0][1][:2])]  # one-time costs (allocator, stop-token table) out of the rows
    Rank1(engine=engine, think_budget=4, cascade=1).rerank_many(warm)
    start = time.process_time()  # CPU time: steady on a shared machine (one thread)
    quick = Rank1(engine=engine, think_budget=args.budget, reasoning=False).rerank_many(requests)
    quick_s = (time.process_time() - start) / len(requests)
    # Stage 1 is one forward pass over each prompt, so its CPU time per prompt token prices the
    # prefill that stage 2 repeats for every candidate it reasons about.
    quick_tokens = statistics.mean(sum(j.prompt_tokens for j in r) for r in quick)
    start = time.process_time()
    full = Rank1(engine=engine, think_budget=args.budget).rerank_many(requests)
    full_s = time.process_time() - start
    full_tokens = [sum(j.reasoning_tokens for j in r) for r in full]
    rows = [("no reasoning (stage 1 alone)", 0, 0, quick_s, float("nan")),
            ("full reasoning", len(requests[0][1]), statistics.mean(full_tokens), full_s / len(requests), 1.0)]
    for m in (int(x) for x in args.top_m.split(",")):
        start = time.process_time()
        rankings = Rank1(engine=engine, think_budget=args.budget, cascade=m).rerank_many(requests)
        seconds = (time.process_time() - start) / len(requests)
        stats = [cascade_stats(r) for r in rankings]
        overlap = statistics.mean(len(set(r.doc_ids[:10]) & set(f.doc_ids[:10])) / 10 for r, f in zip(rankings, full))
        rows.append((f"cascade top-{m}", statistics.mean(s.chains for s in stats),
                     statistics.mean(s.chain_tokens for s in stats), seconds, overlap))
        saved = statistics.mean(f - s.chain_tokens for f, s in zip(full_tokens, stats))
        # Stage 2 re-prefills each reasoned prompt; at stage 1's cost per prompt token that is at
        # most this much (less where the shared query prefix is prefilled once per batch).
        prefill = quick_s * statistics.mean(sum(j.prompt_tokens for j in r if j.reasoned) for r in rankings) / quick_tokens
        # Measured too: Rank1 at think budget 1 over the same candidates (prefill, one token, close).
        chosen = [(q, [d for d, j in zip(docs, sorted(r, key=lambda j: j.index)) if j.reasoned])
                  for (q, docs), r in zip(requests, rankings)]
        start = time.process_time()
        Rank1(engine=engine, think_budget=1).rerank_many(chosen)
        direct = (time.process_time() - start) / len(requests)
        print(f"top-{m}: stage 2 {seconds - quick_s:.1f} CPU s per query, of which re-prefill <= {prefill:.1f} "
              f"({prefill / (seconds - quick_s):.0%}) estimated, {direct:.1f} measured (prefill + 1 token + close)",
              file=sys.stderr)
        print(f"top-{m}: estimated saved {statistics.mean(s.tokens_saved for s in stats):.0f}, "
              f"measured saved {saved:.0f} tokens per query", file=sys.stderr)
    print(f"# {len(requests)} DL19 queries x {args.candidates} BM25 candidates, budget {args.budget}, "
          f"batch {args.batch}, SmolLM2-135M-Instruct, cpu")
    print("| route | chains per query | chain tokens per query | CPU s per query | top-10 overlap with full |")
    print("|---|---|---|---|---|")
    for name, chains, tokens, seconds, overlap in rows:
        print(f"| {name} | {chains:.0f} | {tokens:.0f} | {seconds:.1f} | {'-' if math.isnan(overlap) else f'{overlap:.2f}'} |")


if __name__ == "__main__":
    main()
