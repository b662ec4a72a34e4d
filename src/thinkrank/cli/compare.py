"""``thinkrank compare``: two rerankers on the same candidates (quality, agreement, size, memory,
speed), e.g. a model against its quantized version."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from thinkrank.cli import options
from thinkrank.cli.common import ProgressBar, fail, friendly_errors
from thinkrank.cli.options import Mode
from thinkrank.declare import bounds


def register(app: typer.Typer) -> None:
    app.command("compare", help=COMPARE_HELP)(compare)


COMPARE_HELP = """Compare two rerankers on the same candidates: the Rank1 paper's Table 7 (a model against its int4 version).

Both models rerank the top --top-k of --run for the same queries. Prints and writes (comparison.json, and a "Compared with" section in OUTPUT/report.html) the main measure of both with a paired t-test and randomization test, score agreement (Spearman per query and pooled, top-10 overlap, score differences), weights on disk, peak memory (process RSS on CPU, CUDA peak on GPU), load time and judgments per second. OUTPUT holds --compare-model's evaluation, OUTPUT/baseline --model's; each keeps a judgment cache, so a rerun computes only what is missing (delete the caches to time again). Example:

  thinkrank retrieve --dataset ../shared/data/scifact --method bm25 --output scifact-bm25.trec

  thinkrank compare --dataset ../shared/data/scifact --run scifact-bm25.trec --top-k 20 --reasoning off --model rank1-0.5b --compare-model rank1-0.5b-awq --output runs/awq
"""


@options.command(lambda **opts: _compare(**opts), {
    "engine": options.HEAD[2:], "split": ("device", "batch_size", "static_cache", "compile", "max_passage_tokens"),
})
def compare(
    dataset: Annotated[Path, typer.Option("--dataset", "-d", help="Collection folder (with qrels).")],
    run: Annotated[str, typer.Option("--run", "-r", help="A run of the collection or a run file.")],
    model: Annotated[str, typer.Option("--model", "-m", help="Baseline reranker (e.g. the original model).")],
    compare_model: Annotated[str, typer.Option(help="The reranker to compare with it (e.g. the quantized model).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output folder.")],
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="Candidates per query."), bounds(1)] = 100,
    queries: Annotated[int | None, typer.Option("--queries", "-n", help="Only the first N queries.")] = None,
    engine: Annotated[str, typer.Option(help="auto, transformers or vllm (the same for both models).")] = "auto",
    split: Annotated[str, typer.Option(help="BEIR folders: which qrels/<split>.tsv to use.")] = "test",
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """The command's own flags; the pointwise and local-engine ones come from their declarations."""


@friendly_errors
def _compare(**o: Any) -> None:
    from functools import partial

    from thinkrank.cli.checks import check_numbers
    from thinkrank.cli.common import given_options, reranker_spec
    from thinkrank.cli.evaluate import _load_run
    from thinkrank.cli.rerank import build_in_worker
    from thinkrank.datasets import load_collection
    from thinkrank.evaluation.compare import compare as compare_runs, measured_evaluation
    from thinkrank.evaluation.runner import select_queries, write_outputs

    check_numbers({"top_k": o["top_k"]}, compare)
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
