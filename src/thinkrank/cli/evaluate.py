"""``thinkrank evaluate``: score a run on a collection, optionally reranked, resumable from a cache."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from thinkrank.cli import calibration_options, options, ray_options
from thinkrank.cli.common import Interrupted, ProgressBar, Say, fail, friendly_errors, reranker_spec
from thinkrank.cli.ray_options import GpusPerWorker, RayAddress, Workers
from thinkrank.declare import bounds

EVALUATE_HELP = """Evaluate a first-stage run on a collection, reranked by a reasoning reranker or as it is.

--dataset is a collection folder (see thinkrank retrieve); --run is the name of one of its runs (runs/NAME.trec) or a run file. With --model, the top --top-k candidates of each query are reranked; every judgment goes to a SQLite cache (default: OUTPUT/judgments.sqlite), committed per engine batch, so an interrupted evaluation rerun with the same arguments computes only what is missing. Writes first-stage.trec, reranked.trec, rankings.jsonl (scores with reasoning), metrics.json and report.html into --output, and prints first stage against reranked. Examples:

  thinkrank evaluate --dataset ../shared/data/dl19 --run bm25 --top-k 100 --model jhu-clsp/rank1-7b

  thinkrank evaluate --dataset ../shared/data/dl19 --run bm25 --queries 5 --model ./model.gguf --think-budget 256

  thinkrank evaluate --dataset ../shared/data/dl19 --run runs/my-run.trec

  thinkrank evaluate --dataset ../shared/data/dl19 --run bm25 --model jhu-clsp/rank1-7b --cascade top=20

  thinkrank evaluate --dataset ../shared/data/dl19 --run bm25 --model jhu-clsp/rank1-7b --calibration rank1.calibration.json --select recall=0.9
"""


def register(app: typer.Typer) -> None:
    app.command("evaluate", help=EVALUATE_HELP)(evaluate)


@options.command(lambda **opts: _evaluate(**opts), {"queries": ("family", *options.HEAD[1:]), "report": options.SAMPLING + options.LISTWISE + options.SETWISE + options.ENGINE})
def evaluate(
    dataset: Annotated[Path, typer.Option("--dataset", "-d", help="Collection folder.")],
    run: Annotated[str, typer.Option("--run", "-r", help="A run of the collection (bm25, …) or a run file.")],
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="Candidates per query to evaluate and rerank."),
                     bounds(1)] = 100,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Reranker: hub id, local directory, .gguf or adapter. "
                                 "Without it the run is evaluated as it is.")
    ] = None,
    queries: Annotated[int | None, typer.Option("--queries", "-n", help="Only the first N queries."), bounds(1)] = None,
    query_ids: Annotated[str | None, typer.Option(help="Only these query ids, comma-separated.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Output folder.  "
                                                "\\[default: runs/DATASET-RUN\\[-MODEL]]")] = None,
    cache: Annotated[Path | None, typer.Option(help="Judgment cache file.  \\[default: OUTPUT/judgments.sqlite]")] = None,
    calibration: calibration_options.CalibrationFile = None,
    select: calibration_options.Select = None,
    chunk_size: Annotated[int | None, typer.Option(help="Pairs sent to the engine together (sorted by length, "
                                                   "each finished engine batch saved at once: a kill loses at most the "
                                                   "batch in flight).  \\[default: 64 pairs; listwise and --cascade: 1 "
                                                   "query, saved per query]"), bounds(1)] = None,
    measures: Annotated[str | None, typer.Option(help="Comma-separated ir-measures names; the first is the main one. "
                                                 "\\[default: nDCG@10,nDCG@20,AP,R@100,RR@10,Judged@10]")] = None,
    split: Annotated[str, typer.Option(help="BEIR folders: which qrels/<split>.tsv to use.")] = "test",
    report: Annotated[bool, typer.Option(help="Write report.html.")] = True,
    ray: RayAddress = None,
    workers: Workers = None,
    gpus_per_worker: GpusPerWorker = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """The command's own flags (``--model`` is optional here); the others come from their declarations."""


@friendly_errors
def _evaluate(**opts: Any) -> None:
    from thinkrank.cache import JudgmentCache
    from thinkrank.cli.checks import check_needs_model, check_numbers
    from thinkrank.cli.common import given_options, quiet_libraries
    from thinkrank.datasets import load_collection
    from thinkrank.evaluation.metrics import DEFAULT_MEASURES, measure_name
    from thinkrank.evaluation.runner import (
        evaluate as evaluate_run,
        prepare_output,
        select_queries,
        write_outputs,
    )
    from thinkrank.rerankers.lazy import LazyReranker

    quiet_libraries(opts["quiet"])
    check_numbers(opts, evaluate)  # the command's own ranges (the module's evaluate, not the runner's)
    given = given_options()
    check_needs_model(given, bool(opts["model"]))
    options.check(opts, given)
    if opts["queries"] is not None and opts["query_ids"] is not None:
        fail("give at most one of --queries N and --query-ids")
    ray_options.check(opts)
    if opts["ray"] is not None and not opts["model"]:
        fail("--ray runs a reranker: give --model too")
    measures = [m.strip() for m in opts["measures"].split(",") if m.strip()] if opts["measures"] else DEFAULT_MEASURES
    measures = [measure_name(m) for m in measures]  # fail on a bad name before loading a model
    spec = reranker_spec(opts) if opts["model"] else None
    if opts["calibration"] is not None and not opts["model"]:
        fail("--calibration applies to a reranker's scores: give --model too")
    cal, selection = calibration_options.load(opts)  # a bad file or --select fails before the model loads
    collection = load_collection(opts["dataset"], split=opts["split"])
    first_stage = _load_run(opts["run"], collection)
    ids = [q.strip() for q in opts["query_ids"].split(",") if q.strip()] if opts["query_ids"] else None
    qids = select_queries(collection, first_stage, opts["queries"], ids)
    output = opts["output"] or _default_output(collection.name, opts["run"], opts["model"])
    say = Say(opts["quiet"])
    stale = prepare_output(output)  # unwritable folder: fail now, not after judging
    if stale:
        say(f"removed the previous run's {', '.join(stale)} from {output}")
    say(f"{collection.name}: {len(qids)} queries, top {opts['top_k']} of {first_stage.name}; output in {output}")
    reranker, cache = None, None
    progress = ProgressBar("judging", opts["quiet"])
    try:
        if spec is not None:
            cache = JudgmentCache(opts["cache"] or output / "judgments.sqlite")  # a bad file fails before the model loads
            say(f"judgment cache {cache.path}: {len(cache)} entries")
            if opts["ray"] is None:  # lazy: a rerun whose judgments are all cached never loads the model
                reranker = LazyReranker(spec, cache)
                if cal is not None:
                    cal.check_settings(reranker.settings)  # before any judging
            else:  # the Ray actors judge through the cache themselves
                from thinkrank.cli.rerank import build_in_worker

                reranker = ray_options.ray_reranker(opts, build_in_worker, judges=spec.judges,
                                                    cache=cache.path, chunk_size=opts["chunk_size"], progress=progress)
        with progress:
            result = evaluate_run(collection, first_stage, top_k=opts["top_k"], reranker=reranker,
                              cache=cache if opts["ray"] is None else None, qids=qids,
                              measures=measures, chunk_size=opts["chunk_size"], progress=progress)
    except KeyboardInterrupt:
        if cache is not None:  # one line, printed by friendly_errors
            raise Interrupted(f"interrupted: {len(cache)} judgments are saved in {cache.path}; rerun the same "
                              "command to resume") from None
        raise
    finally:
        ray_options.close(reranker)
        if cache is not None:
            cache.close()
    if cal is not None:
        from thinkrank.calibration.evaluation import calibration_info, selection_summary

        cal.check_settings(result.settings)
        cal.apply(result.rankings.values())
        result.calibration = calibration_info(cal)
        if selection is not None:
            result.selection = selection_summary(result.rankings, result.qrels, cal, selection)
            _say_selection(result.selection, say)
    paths = write_outputs(result, output, report=opts["report"])
    if spec is not None:
        # A listwise or cascade reranker is cached per query: its unit is a query's ranking.
        unit = "judgments" if spec.judges == "pair" else "query rankings"
        say(f"{result.use.computed} {unit} computed, {result.use.cached} read from the cache, "
            f"{result.seconds:.1f}s")
        _say_unparsed(list(result.rankings.values()), output / "rankings.jsonl")
        if opts["cascade"] is not None:
            from thinkrank.evaluation.runner import cascade_counts

            c = cascade_counts(result)
            say(f"cascade: {c['chains']} of {c['candidates']} candidates reasoned over {len(c['per_query'])} queries, "
                f"{c['chain_tokens']} chain tokens, ~{c['tokens_saved']} saved (per query in metrics.json)")
    _print_table(result)
    for name, path in paths.items():
        say(f"{name.replace('_', ' ')}: {path}")


def _say_selection(summary: dict[str, Any], say: Any) -> None:
    line = f"select: kept {summary['mean_kept']:.2f} documents per query on average over {summary['queries']} queries"
    if summary.get("mean_recall") is not None:
        line += f", mean recall {summary['mean_recall']:.3f}"
    if summary.get("coverage") is not None:
        fixed = summary["fixed_top_k"]
        line += (f", {summary['coverage']:.3f} of queries reached recall {summary['recall']:g} (a fixed top "
                 f"{fixed['k'] or 'all'} with the same guarantee: {fixed['coverage']:.3f})")
    say(line + " (per query in metrics.json)")


def _say_unparsed(rankings: list[Any], rankings_file: Path) -> None:
    """Listwise windows without a usable ordering are never silent: one line on stderr, pointing
    at the file that holds the windows (evaluate has no --format)."""
    from thinkrank.cli.rerank import unparsed_summary

    line = unparsed_summary(rankings, str(rankings_file))
    if line:
        print(line, file=sys.stderr, flush=True)


def _load_run(spec: str, collection: Any) -> Any:
    from thinkrank.datasets import read_run

    path = Path(spec)
    if path.is_file():
        return read_run(path, name=_strip_suffixes(path.name))
    if spec in collection.runs:
        return collection.run(spec)
    from thinkrank.errors import InvalidInputError

    raise InvalidInputError(
        f"--run {spec!r} is neither a file nor a run of {collection.name!r} (its runs: {sorted(collection.runs) or 'none'})"
    )


def _strip_suffixes(name: str) -> str:
    for suffix in (".gz", ".trec", ".txt", ".run", ".jsonl", ".json"):
        name = name.removesuffix(suffix)
    return name


def _default_output(dataset: str, run: str, model: str | None) -> Path:
    from thinkrank.evaluation.runner import run_tag

    parts = [dataset.replace("/", "-"), run_tag(_strip_suffixes(Path(run).name))]
    if model:
        parts.append(run_tag(model))
    return Path("runs") / "-".join(parts)


def _print_table(result: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if result.first_metrics is None:
        console.print(f"{result.dataset} has no relevance judgments: no metrics")
        return
    reranked = result.reranked_metrics
    title = f"{result.dataset}: {result.run_name} top {result.top_k}" + (
        f" → {result.reranked.name}" if reranked else "") + f" ({len(result.first_metrics.per_query)} judged queries)"
    table = Table(title=title)
    for col in ["measure", "first stage"] + (["reranked", "Δ", "p (t-test)"] if reranked else []):
        table.add_column(col, justify="left" if col == "measure" else "right")
    for m, before in result.first_metrics.aggregate.items():
        row = [m, f"{before:.4f}"]
        if reranked:
            after, test = reranked.aggregate[m], result.tests.get(m)
            colour = "green" if after > before else "red" if after < before else "white"
            row += [f"{after:.4f}", f"[{colour}]{after - before:+.4f}[/]", f"{test.p_value:.3f}" if test else "–"]
        table.add_row(*row)
    console.print(table)

