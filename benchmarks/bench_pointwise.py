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
    python benchmarks/bench_pointwise.py --shape smollm2-real --dtype bfloat16 --routes thinkrank,generate
    python benchmarks/bench_pointwise.py --shape qwen2.5-0.5b --routes thinkrank,generate,static

Random weights (``--shape``) never write ``</think>`` or end-of-sequence, so every chain runs
to the budget and all routes generate the same number of tokens: right for speed, meaningless
for quality. ``--shape smollm2-real`` uses the real SmolLM2-135M-Instruct weights;
``qwen2.5-0.5b`` is the real Qwen2.5-0.5B configuration with random weights and the real
Qwen2.5 vocabulary. ``--dtype bfloat16`` runs every route in bf16 (also on CPU).

Besides speed, the table compares every route's chains with ``generate``'s: how many pairs
generated identical token ids, and the largest score difference over those pairs and over the
others (in bf16, different batching and padding can flip a near-tied greedy pick, after which
the chains, and so the scores, differ). Below it, ``generate``'s own closed chains are scored
again by thinkrank's engine (teacher forcing): the same chains by construction, so what differs
there is scoring arithmetic alone.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from routes import (  # noqa: E402
    THINKRANK_OPTIONS, agreement, chain_agreement, chain_cells, dl19_requests, generate_route, prompts_of,
    teacher_forced, teacher_forced_scores, thinkrank_engine, thinkrank_route,
)

from thinkrank.testing import smollm2_dir, tiny_qwen_dir  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "dl19"


QWEN25_05B = dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                  num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True)  # the hub's config.json


def build(shape: str, hidden: int, layers: int, device: str, dtype: torch.dtype = torch.float32):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if shape == "qwen":
        path = tiny_qwen_dir(hidden_size=hidden, num_layers=layers)
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype), AutoTokenizer.from_pretrained(path)
    if shape == "qwen2.5-0.5b":
        from transformers import Qwen2Config, Qwen2ForCausalLM

        from thinkrank.testing import qwen_tokenizer

        tok = qwen_tokenizer()
        config = Qwen2Config(**QWEN25_05B, max_position_embeddings=32768, rope_theta=1e6,
                             eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=None)
        torch.manual_seed(0)
        return Qwen2ForCausalLM(config).to(dtype), tok
    path = smollm2_dir()
    tok = AutoTokenizer.from_pretrained(path)
    if shape == "smollm2-real":
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype), tok
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path)).to(dtype), tok


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", choices=["smollm2", "smollm2-real", "qwen", "qwen2.5-0.5b"], default="smollm2")
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
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

    model, tok = build(args.shape, args.hidden, args.layers, args.device, getattr(torch, args.dtype))
    model = model.to(args.device).eval()
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    routes = args.routes.split(",")
    engines = {r: thinkrank_engine(model, tok, r, args.device, args.batch) for r in routes if r in THINKRANK_OPTIONS}
    engine = engines.get("thinkrank") or thinkrank_engine(model, tok, "thinkrank", args.device, args.batch)  # teacher forcing
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
          f"{args.budget}, batch {args.batch}, shape {args.shape}, {args.dtype}"
          f"{f' h={args.hidden} l={args.layers}' if args.shape == 'qwen' else ''}, {machine}, {args.reps} reps")
    print("| route | CPU s (median) | all reps, CPU s | wall s (median) | docs per CPU s | chain tok per CPU s "
          "| CPU s per 100-candidate query | speed-up vs generate (CPU) | speed-up (wall) | max score diff vs generate "
          "| identical chains vs generate | max diff, identical chains | max diff, divergent chains |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    med = {r: (statistics.median(x.cpu_seconds for x in results[r]), statistics.median(x.seconds for x in results[r]))
           for r in routes}
    base = med.get("generate")
    rows = []
    for route in routes:
        runs, (cpu, wall) = results[route], med[route]
        r0 = runs[0]
        diff = agreement(r0, results["generate"][0]) if "generate" in results else float("nan")
        same = chain_agreement(r0, results["generate"][0]) if "generate" in results else None
        row = {"route": route, "cpu_seconds": cpu, "seconds": wall, "cpu_reps": [r.cpu_seconds for r in runs],
               "wall_reps": [r.seconds for r in runs], "docs": r0.docs, "chain_tokens": r0.chain_tokens,
               "max_score_diff": diff, "chains": same and vars(same), "scores": r0.scores}
        rows.append(row)
        reps = " / ".join(f"{x:.1f}" for x in row["cpu_reps"])
        speed = f"{base[0] / cpu:.2f}x | {base[1] / wall:.2f}x" if base else "- | -"
        print(f"| {route} | {cpu:.1f} | {reps} | {wall:.1f} | {r0.docs / cpu:.2f} | {r0.chain_tokens / cpu:.0f} "
              f"| {100 * cpu / r0.docs:.0f} | {speed} | {diff:.1e} | {chain_cells(same)} |")
    for row in rows:
        print(f"{row['route']}: scores range {min(row['scores']):.3f}-{max(row['scores']):.3f}")
        if row["chains"] and row["chains"]["first_divergence"]:
            print(f"{row['route']}: first differing generated token (0-based) of each divergent chain: "
                  f"{sorted(row['chains']['first_divergence'])}")
    forced = {}
    if "generate" in results:
        forced = teacher_forced(engine, requests, results["generate"][0], true_id, false_id)
        print(f"\nTeacher-forced (generate's own closed chains scored by thinkrank's engine), max score diff vs "
              f"generate: close-from-cache path {forced['close_from_cache']:.1e}, "
              f"next_token_logprobs {forced['next_token_logprobs']:.1e}")
        if args.dtype != "float32":
            forced["vs_float32"] = float32_errors(model, tok, engine, requests, results["generate"][0], true_id, false_id)
            print("Against float32 scores of the same closed chains (the exact arithmetic), max score error: "
                  + ", ".join(f"{k} {v:.1e}" for k, v in forced["vs_float32"].items()))
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "machine": machine,
                                         "rows": rows, "teacher_forced": forced}, indent=1))


def float32_errors(model, tok, engine, requests, ref, true_id: int, false_id: int) -> dict[str, float]:
    """How far each low-precision scoring path lands from float32 on ``ref``'s own closed chains:
    generate's scoring pass, thinkrank's close-from-cache path and its next_token_logprobs."""
    import copy

    exact = thinkrank_engine(copy.deepcopy(model).float(), tok, "thinkrank", engine.device, engine.batch_size)
    truth = [1.0 / (1.0 + math.exp(lp[false_id] - lp[true_id]))
             for lp in exact.next_token_logprobs(ref.closed, [true_id, false_id])]
    paths = {"generate": ref.scores, **teacher_forced_scores(engine, requests, ref, true_id, false_id)}
    return {name: max(abs(x - y) for x, y in zip(scores, truth)) for name, scores in paths.items()}


if __name__ == "__main__":
    main()
