"""Throughput of Rank1 pointwise reranking on the transformers engine.

Compares thinkrank's batched decode loop (length-sorted, left-padded, finished rows leave the
batch, answer read in the same pass) with the naive route of the reference code run on plain
transformers: ``model.generate`` one pair at a time, then a second forward pass over
prompt + chain for the answer. Both use the same model and the same real DL19 passages.

    python benchmarks/bench_pointwise.py --pairs 32 --budget 64 --hidden 256 --layers 4

The model is Qwen2-shaped with random weights and the real Qwen2.5 tokenizer (see
``thinkrank.testing``): right for speed, meaningless for quality. On a GPU pass ``--device cuda``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from thinkrank import Rank1
from thinkrank.engines.transformers import TransformersEngine
from thinkrank.prompts.rank1 import build_rank1_prompt
from thinkrank.testing import tiny_qwen_dir

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "dl19"


def load_pairs(n: int) -> tuple[str, list[str]]:
    query = json.loads((DATA / "queries.jsonl").read_text().splitlines()[0])["text"]
    passages = [json.loads(line)["text"] for line in (DATA / "corpus.jsonl").read_text().splitlines()[:n]]
    return query, passages


def naive(engine: TransformersEngine, query: str, passages: list[str], budget: int) -> float:
    tok, model = engine.tokenizer.hf, engine.model
    start = time.perf_counter()
    with torch.inference_mode():
        for passage in passages:
            ids = tok(build_rank1_prompt(query, passage), return_tensors="pt").input_ids.to(engine.device)
            out = model.generate(ids, max_new_tokens=budget, do_sample=False, pad_token_id=tok.pad_token_id)
            close = tok("\n</think>", return_tensors="pt", add_special_tokens=False).input_ids.to(engine.device)
            model(torch.cat([out, close], dim=1)).logits[0, -1].float().log_softmax(-1)[[830, 895]]
    return time.perf_counter() - start


def thinkrank_batched(engine: TransformersEngine, query: str, passages: list[str], budget: int) -> float:
    reranker = Rank1(engine=engine, think_budget=budget)
    start = time.perf_counter()
    reranker.rerank(query, passages)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=32)
    ap.add_argument("--budget", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-sizes", default="8,16")
    args = ap.parse_args()

    model_dir = tiny_qwen_dir(hidden_size=args.hidden, num_layers=args.layers)
    query, passages = load_pairs(args.pairs)
    rows = []
    engine = TransformersEngine(str(model_dir), device=args.device)
    # Random weights rarely emit EOS, so every chain runs to the budget: tokens = pairs * budget.
    tokens = args.pairs * args.budget
    seconds = naive(engine, query, passages, args.budget)
    rows.append(("transformers generate, one by one", seconds))
    for bs in [int(b) for b in args.batch_sizes.split(",")]:
        engine.batch_size = bs
        rows.append((f"thinkrank batched (batch {bs})", thinkrank_batched(engine, query, passages, args.budget)))

    print(f"# {args.pairs} pairs, budget {args.budget}, Qwen2 h={args.hidden} l={args.layers}, "
          f"{args.device}, torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads")
    print("| method | seconds | pairs/s | chain tokens/s | speed-up |")
    print("|---|---|---|---|---|")
    base = rows[0][1]
    for name, sec in rows:
        print(f"| {name} | {sec:.1f} | {args.pairs / sec:.2f} | {tokens / sec:.0f} | {base / sec:.1f}x |")


if __name__ == "__main__":
    main()
