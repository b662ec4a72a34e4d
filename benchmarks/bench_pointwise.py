"""Rank1 pointwise throughput, side by side, on the transformers engine (CPU or one GPU).

In one run, on the same real DL19 candidates (BM25 top-k), with the same prompts, budget,
greedy decoding and answer rule, compares thinkrank against what a capable user writes on
plain transformers (see ``routes.py``): (a) ``generate`` batched with left padding plus one
scoring pass, and (b) the same with a static KV cache. ``thinkrank-static`` and
``thinkrank-compiled`` run the engine's fixed-shape decode loop, eagerly and compiled (the
compiled route is warmed up on the measured call, so compiling is not timed). Routes run interleaved and repeated
(the order rotates each repetition), after one small warm-up call each, so a noisy shared
machine hits all of them alike; the table gives the median and every repetition. The main
measure is the process's CPU time (``time.process_time``, one thread): on a machine shared with
other work it is far steadier than wall time, which is reported beside it.

    python benchmarks/bench_pointwise.py --shape smollm2 --pairs 32 --budget 64 --batch 16 --reps 3
    python benchmarks/bench_pointwise.py --shape qwen --hidden 256 --layers 4

Random weights (``--shape``) never write ``</think>`` or end-of-sequence, so every chain runs
to the budget and all routes generate the same number of tokens: right for speed, meaningless
for quality. ``--shape smollm2-real`` uses the real SmolLM2-135M-Instruct weights.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from routes import (  # noqa: E402
    THINKRANK_OPTIONS, agreement, dl19_requests, generate_route, prompts_of, thinkrank_engine, thinkrank_route,
)

from thinkrank.testing import smollm2_dir, tiny_qwen_dir  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "dl19"


def build(shape: str, hidden: int, layers: int, device: str):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if shape == "qwen":
        path = tiny_qwen_dir(hidden_size=hidden, num_layers=layers)
        return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32), AutoTokenizer.from_pretrained(path)
    path = smollm2_dir()
    tok = AutoTokenizer.from_pretrained(path)
    if shape == "smollm2-real":
        return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32), tok
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path)), tok


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", choices=["smollm2", "smollm2-real", "qwen"], default="smollm2")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--queries", type=int, default=1)
    ap.add_argument("--pairs", type=int, default=32, help="candidates per query")
    ap.add_argument("--budget", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--routes", default="thinkrank,generate,generate-nostop,static")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    model, tok = build(args.shape, args.hidden, args.layers, args.device)
    model = model.to(args.device).eval()
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    routes = args.routes.split(",")
    engines = {r: thinkrank_engine(model, tok, r, args.device, args.batch) for r in routes if r in THINKRANK_OPTIONS}
    true_id, false_id = tok.encode(" true", add_special_tokens=False)[0], tok.encode(" false", add_special_tokens=False)[0]
    requests = dl19_requests(DATA, args.queries, args.pairs)
    prompts = prompts_of(requests)

    def run(route: str, reqs, budget: int):
        if route in engines:
            return thinkrank_route(engines[route], reqs, budget, reuse=route != "thinkrank-no-reuse", name=route)
        return generate_route(model, tok, prompts_of(reqs), budget, args.batch, true_id, false_id,
                              static=route.startswith("static"), stop=not route.endswith("-nostop"), device=args.device,
                              compile_how="manual" if route.startswith("static-manual") else "auto")

    for route in routes:  # warm-up: one-time costs (allocator, stop-token table, compilation)
        if route in ("thinkrank-compiled", "thinkrank-cudagraphs"):  # compiled at the measured shapes
            run(route, requests, args.budget)
        else:
            run(route, [(requests[0][0], requests[0][1][:2])], 4)
    results: dict[str, list] = {r: [] for r in routes}
    for rep in range(args.reps):
        for route in routes[rep % len(routes):] + routes[: rep % len(routes)]:
            results[route].append(run(route, requests, args.budget))
            print(f"rep {rep} {route}: {results[route][-1].seconds:.1f}s", file=sys.stderr)

    machine = (f"{args.device}, torch {torch.__version__}, {platform.machine()}, {torch.get_num_threads()} threads")
    print(f"# {len(prompts)} pairs ({args.queries} DL19 quer{'y' if args.queries == 1 else 'ies'}), budget "
          f"{args.budget}, batch {args.batch}, shape {args.shape}"
          f"{f' h={args.hidden} l={args.layers}' if args.shape == 'qwen' else ''}, {machine}, {args.reps} reps")
    print("| route | CPU s (median) | all reps, CPU s | wall s (median) | docs per CPU s | chain tok per CPU s "
          "| CPU s per 100-candidate query | speed-up vs generate (CPU) | speed-up (wall) | max score diff vs generate |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    med = {r: (statistics.median(x.cpu_seconds for x in results[r]), statistics.median(x.seconds for x in results[r]))
           for r in routes}
    base = med.get("generate")
    rows = []
    for route in routes:
        runs, (cpu, wall) = results[route], med[route]
        r0 = runs[0]
        diff = agreement(r0, results["generate"][0]) if "generate" in results else float("nan")
        row = {"route": route, "cpu_seconds": cpu, "seconds": wall, "cpu_reps": [r.cpu_seconds for r in runs],
               "wall_reps": [r.seconds for r in runs], "docs": r0.docs, "chain_tokens": r0.chain_tokens,
               "max_score_diff": diff}
        rows.append(row)
        reps = " / ".join(f"{x:.1f}" for x in row["cpu_reps"])
        speed = f"{base[0] / cpu:.2f}x | {base[1] / wall:.2f}x" if base else "- | -"
        print(f"| {route} | {cpu:.1f} | {reps} | {wall:.1f} | {r0.docs / cpu:.2f} | {r0.chain_tokens / cpu:.0f} "
              f"| {100 * cpu / r0.docs:.0f} | {speed} | {diff:.1e} |")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "machine": machine,
                                         "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
