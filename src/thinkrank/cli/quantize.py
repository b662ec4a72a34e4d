"""``thinkrank quantize`` (AWQ int4 through llm-compressor) and ``thinkrank compare`` (two
rerankers on the same candidates: quality, agreement, size, memory, speed)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from thinkrank.cli import options
from thinkrank.cli.common import ProgressBar, Switch, fail, friendly_errors
from thinkrank.cli.options import Mode

QUANTIZE_HELP = """Quantize a Rank1 model's weights to int4 with AWQ (needs the quantize extra: llm-compressor).

The output is a compressed-tensors W4A16 checkpoint: vLLM serves it with int4 kernels (`vllm serve OUTPUT`, `--engine vllm`); the transformers engine loads it on CPU or GPU by decompressing the weights to 16/32-bit (smaller on disk, not in memory). Calibration is in-domain by default: --dataset builds Rank1 prompts from a collection's queries and BM25 passages, --traces adds reasoning chains (prompt/completion JSONL from `thinkrank distill filter`), --calibration takes your own JSONL; with none of them a small built-in set of Rank1 prompts is used. Every quantized layer's input size must divide by --group-size; by default 128, or the largest of 64, 32, 16 that fits the model (SmolLM2: 64). Run the same command again after an interruption: a finished output is reused, a partial one is started over. Examples:

  thinkrank quantize --model runs/rank1-7b/model --dataset ../shared/data/scifact/train --output rank1-7b-awq

  thinkrank quantize --model "$(python -m thinkrank.testing smollm2)" --output q/

  thinkrank rerank --model q/ --query "..." --docs docs.jsonl
"""


def register(app: typer.Typer) -> None:
    app.command("quantize", help=QUANTIZE_HELP)(quantize)
    app.command("compare", help=COMPARE_HELP)(compare)


def quantize(
    model: Annotated[str, typer.Option("--model", "-m", help="Model folder or hub id (a merged model).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the quantized model.")],
    method: Annotated[str, typer.Option(help="Quantization method: awq.")] = "awq",
    bits: Annotated[int, typer.Option(help="Weight bits: 4 (W4A16) or 8 (W8A16).")] = 4,
    group_size: Annotated[int | None, typer.Option(help="Input channels per scale; must divide every layer's input "
                                                   "size.  [default: 128, or the largest of 64, 32, 16 that fits]")] = None,
    dataset: Annotated[Path | None, typer.Option("--dataset", "-d", help="Collection folder: calibrate on Rank1 "
                                                 "prompts of its queries and BM25 passages (recommended).")] = None,
    traces: Annotated[Path | None, typer.Option(help="prompt/completion JSONL: calibrate on prompts with chains.")] = None,
    calibration: Annotated[Path | None, typer.Option(help="JSONL of {\"text\"} or {\"prompt\",\"completion\"} "
                                                     "lines, used as it is.")] = None,
    prompt: Annotated[str | None, typer.Option(help="Dataset template for --dataset prompts (scifact, …).")] = None,
    num_samples: Annotated[int, typer.Option(help="Calibration texts.")] = 64,
    max_seq_length: Annotated[int, typer.Option(help="Tokens kept of each calibration text.")] = 512,
    n_grid: Annotated[int, typer.Option(help="AWQ grid-search points per layer (fewer: faster).")] = 20,
    ignore: Annotated[str, typer.Option(help="Comma-separated layers kept in full precision.")] = "lm_head",
    dtype: Annotated[str, typer.Option(help="auto (the checkpoint's), bfloat16, float16 or float32.")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed for choosing calibration texts.")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an output made with other settings.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", help="Show llm-compressor's own logs and bars.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    _quantize(**locals())


@friendly_errors
def _quantize(**o: Any) -> None:
    if not o["verbose"]:
        # Read when tqdm and llm-compressor are first imported, which happens below.
        os.environ.setdefault("TQDM_DISABLE", "1")
        os.environ.setdefault("LLM_COMPRESSOR_LOG_LEVEL", "ERROR")
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    from thinkrank.quantization import QuantizeConfig, quantize as run

    config = QuantizeConfig(
        model=o["model"], output=o["output"], method=o["method"], bits=o["bits"], group_size=o["group_size"],
        num_samples=o["num_samples"], max_seq_length=o["max_seq_length"], dataset=o["dataset"], traces=o["traces"],
        calibration=o["calibration"], prompt=o["prompt"], ignore=tuple(i.strip() for i in o["ignore"].split(",") if i.strip()),
        n_grid=o["n_grid"], dtype=o["dtype"], seed=o["seed"], overwrite=o["overwrite"],
    )
    with ProgressBar("calibrating layers", o["quiet"]) as bar:
        result = run(config, progress=bar)
    say = lambda m: typer.echo(m, err=True)  # noqa: E731
    if result.reused:
        say(f"{result.output} is already quantized with these settings; nothing to do")
    else:
        say(f"quantized {result.layers} linear layers to {result.scheme} (group {result.group_size}) on "
            f"{result.samples} calibration texts ({result.calibration}) in {result.seconds:.0f}s")
        if result.cpu_shim:
            say("no accelerator: ran AWQ on the CPU (llm-compressor's memory pinning skipped)")
    before = f"{result.size_before / 2**20:,.1f} MiB -> " if result.size_before else ""
    say(f"weights: {before}{result.size_after / 2**20:,.1f} MiB in {result.output}")
    typer.echo(json.dumps(result.to_dict()))


COMPARE_HELP = """Compare two rerankers on the same candidates: the Rank1 paper's Table 7 (a model against its int4 version).

Both models rerank the top --top-k of --run for the same queries. Prints and writes (comparison.json, and a "Compared with" section in OUTPUT/report.html) the main measure of both with a paired t-test and randomization test, score agreement (Spearman per query and pooled, top-10 overlap, score differences), weights on disk, peak memory (process RSS on CPU, CUDA peak on GPU), load time and judgments per second. OUTPUT holds --compare-model's evaluation, OUTPUT/baseline --model's; each keeps a judgment cache, so a rerun computes only what is missing (delete the caches to time again). Example:

  thinkrank retrieve --dataset ../shared/data/scifact --method bm25 --output scifact-bm25.trec

  thinkrank compare --dataset ../shared/data/scifact --run scifact-bm25.trec --top-k 20 --reasoning off --model rank1-0.5b --compare-model rank1-0.5b-awq --output runs/awq
"""


def compare(
    dataset: Annotated[Path, typer.Option("--dataset", "-d", help="Collection folder (with qrels).")],
    run: Annotated[str, typer.Option("--run", "-r", help="A run of the collection or a run file.")],
    model: Annotated[str, typer.Option("--model", "-m", help="Baseline reranker (e.g. the original model).")],
    compare_model: Annotated[str, typer.Option(help="The reranker to compare with it (e.g. the quantized model).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output folder.")],
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="Candidates per query.")] = 100,
    queries: Annotated[int | None, typer.Option("--queries", "-n", help="Only the first N queries.")] = None,
    reasoning: options.Reasoning = Switch.on,
    think_budget: options.ThinkBudget = options.DEFAULTS["think_budget"],
    cascade: options.Cascade = None,
    reasoning_close: options.ReasoningClose = options.DEFAULTS["reasoning_close"],
    prompt: options.Prompt = None,
    instruction: options.Instruction = None,
    engine: Annotated[str, typer.Option(help="auto, transformers or vllm (the same for both models).")] = "auto",
    device: options.Device = None,
    batch_size: options.BatchSize = None,
    static_cache: options.StaticCache = False,
    compile: options.Compile = False,
    max_passage_tokens: options.MaxPassageTokens = None,
    split: Annotated[str, typer.Option(help="BEIR folders: which qrels/<split>.tsv to use.")] = "test",
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    _compare(**locals())


@friendly_errors
def _compare(**o: Any) -> None:
    from functools import partial

    from thinkrank.cli.common import given_options, reranker_spec
    from thinkrank.cli.evaluate import _load_run
    from thinkrank.cli.rerank import build_in_worker
    from thinkrank.datasets import load_collection
    from thinkrank.evaluation.compare import compare as compare_runs, measured_evaluation
    from thinkrank.evaluation.runner import select_queries, write_outputs

    if o["top_k"] < 1:
        fail(f"--top-k must be >= 1, got {o['top_k']}")
    if o["engine"] == "openai":
        fail("--engine openai cannot be compared here: the comparison measures each model's memory in its own "
             "process; use auto, transformers or vllm")
    o = {**o, "mode": Mode.pointwise}
    options.check(o, given_options())
    for name in (o["model"], o["compare_model"]):
        reranker_spec({**o, "model": name})  # every setting checked before anything loads
    collection = load_collection(o["dataset"], split=o["split"])
    if not collection.qrels:
        fail(f"--dataset {o['dataset']} has no relevance judgments; a comparison needs qrels")
    first_stage = _load_run(o["run"], collection)
    qids = select_queries(collection, first_stage, o["queries"])
    device = o["device"] or ("cuda" if _cuda() else "cpu")
    out: Path = o["output"]
    measured = {}
    for role, name, folder in (("baseline", o["model"], out / "baseline"), ("candidate", o["compare_model"], out)):
        folder.mkdir(parents=True, exist_ok=True)
        build = partial(build_in_worker, {**o, "model": name})  # the options pickle; a spec does not
        with ProgressBar(f"{role:9}", o["quiet"]) as bar:
            measured[role] = measured_evaluation(build, collection, first_stage, device=device, top_k=o["top_k"],
                                                 qids=qids, cache=folder / "judgments.sqlite", progress=bar)
    result = compare_runs(measured["baseline"], measured["candidate"])
    write_outputs(measured["baseline"].evaluation, out / "baseline")
    measured["candidate"].evaluation.comparison = result
    write_outputs(measured["candidate"].evaluation, out)
    (out / "comparison.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    _print_comparison(result)
    typer.echo(f"comparison: {out / 'comparison.json'}\nreport: {out / 'report.html'}", err=True)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _print_comparison(c: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    m, b, k = c["measure"], c["baseline"], c["candidate"]
    mib = lambda v: "–" if v is None else f"{v / 2**20:,.1f} MiB"  # noqa: E731
    table = Table(title=f"{c['queries']} queries, top {c['top_k']}")
    for col in ("", "baseline", "compared"):
        table.add_column(col, justify="left" if not col else "right")
    table.add_row("model", b["model"], k["model"])
    table.add_row(m, f"{b[m]:.4f}", f"{k[m]:.4f}")
    table.add_row("weights on disk", mib(b["disk_bytes"]), mib(k["disk_bytes"]))
    table.add_row(f"peak memory ({k['memory']})", mib(b["peak_memory_bytes"]), mib(k["peak_memory_bytes"]))
    table.add_row("judgments / s", str(b["per_second"] or "–"), str(k["per_second"] or "–"))
    Console().print(table)
    t, a = c["paired_test"], c["agreement"]
    line = f"{m} difference {c['difference']:+.4f}"
    if t:
        line += f" (paired t-test p={t['p_value']:.3f}, randomization p={t['permutation_p_value']:.3f})"
    typer.echo(f"{line}\nSpearman {a['spearman_mean']} per query, {a['spearman_pooled']} pooled; top-10 overlap "
               f"{a['top10_overlap']}; |score difference| mean {a['mean_abs_diff']}, max {a['max_abs_diff']}")
