"""Rank1 with reasoning off (the cascade's stage 1): prefilling each query's shared prefix once
against prefilling every prompt whole, on real DL19 queries and their BM25 candidates.

    OMP_NUM_THREADS=1 python benchmarks/bench_prefix_scoring.py --queries 2 --candidates 50 --repeats 2

Both routes are the same transformers engine in one process, alternated per repeat: "shared
prefix" passes each query's instruction + query to ``next_token_logprobs`` (what Rank1 does
now); "whole prompts" goes through an engine adapter whose ``next_token_logprobs`` ignores
``shared_prefixes`` (as vLLM and servers do), which is the scoring path as it was before. Reports process CPU time per query (one thread), the prefix's share of the prompt
tokens, and the largest score difference between the routes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from routes import dl19_requests  # noqa: E402

from thinkrank import Rank1  # noqa: E402
from thinkrank.engines.transformers import TransformersEngine  # noqa: E402
from thinkrank.prompts.rank1 import Rank1Prompt  # noqa: E402
from thinkrank.testing import smollm2_dir  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "dl19"


class WholePrompts:
    """The engine with ``shared_prefixes`` ignored: every prompt prefilled whole (as before)."""

    def __init__(self, inner: TransformersEngine) -> None:
        self.inner, self.name, self.model_name = inner, inner.name, inner.model_name
        self.tokenizer, self.context_length = inner.tokenizer, inner.context_length

    def generate(self, requests: Any, progress: Any = None, *, on_batch: Any = None) -> Any:
        return self.inner.generate(requests, progress, on_batch=on_batch)

    def next_token_logprobs(self, prompts: Any, token_ids: Any, progress: Any = None, *, on_batch: Any = None,
                            shared_prefixes: Any = None) -> Any:
        return self.inner.next_token_logprobs(prompts, token_ids, progress, on_batch=on_batch)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--queries", type=int, default=2)
    ap.add_argument("--candidates", type=int, default=50)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    engine = TransformersEngine(str(smollm2_dir()), device="cpu", batch_size=args.batch)
    requests = dl19_requests(DATA, args.queries, args.candidates)
    routes = {"whole prompts (before)": WholePrompts(engine), "shared prefix": engine}
    Rank1(engine=engine, reasoning=False).rerank_many([(requests[0][0], requests[0][1][:2])])  # warm-up
    seconds: dict[str, list[float]] = {name: [] for name in routes}
    scores: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        for name, eng in routes.items():
            start = time.process_time()  # CPU time: steady on a shared machine (one thread)
            rankings = Rank1(engine=eng, reasoning=False).rerank_many(requests)
            seconds[name].append((time.process_time() - start) / len(requests))
            scores[name] = [j.score for r in rankings for j in sorted(r, key=lambda j: j.index)]
    tok = engine.tokenizer
    prompt_tokens = statistics.mean(j.prompt_tokens for r in rankings for j in r)
    head_tokens = statistics.mean(len(tok.encode(Rank1Prompt.create(q, None, None).head)) for q, _ in requests)
    gap = max(abs(a - b) for a, b in zip(*scores.values()))
    base = statistics.median(seconds["whole prompts (before)"])
    print(f"# {len(requests)} DL19 queries x {args.candidates} BM25 candidates, batch {args.batch}, reasoning off, "
          f"SmolLM2-135M-Instruct, cpu; prompts {prompt_tokens:.0f} tokens on average, shared prefix "
          f"{head_tokens:.0f} ({head_tokens / prompt_tokens:.0%}); largest score difference {gap:.1e}")
    print("| route | CPU s per query (median) | each repeat | vs before |")
    print("|---|---|---|---|")
    for name, values in seconds.items():
        med = statistics.median(values)
        print(f"| {name} | {med:.2f} | {', '.join(f'{v:.2f}' for v in values)} | {base / med:.2f}x |")


if __name__ == "__main__":
    main()
