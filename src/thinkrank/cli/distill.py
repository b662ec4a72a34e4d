"""``thinkrank distill``: sample pairs, generate teacher traces, filter them into training data."""

from __future__ import annotations

import json
import os
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from thinkrank.cli.common import ProgressBar, Switch, fail, friendly_errors
from thinkrank.prompts.rank1 import THINK_BUDGET

distill_app = typer.Typer(
    name="distill", no_args_is_help=True, add_completion=False,
    help="Distil a reasoning teacher into Rank1 training data: sample -> generate -> filter (see docs/training.md).",
)


def register(app: typer.Typer) -> None:
    app.add_typer(distill_app, name="distill")


class TeacherKind(str, Enum):
    api = "api"
    batch = "batch"
    engine = "engine"


class Api(str, Enum):
    chat = "chat"
    completions = "completions"


SAMPLE_HELP = """Draw labelled (query, passage) pairs in the paper's mix and write them as JSONL.

Default mix: 25% qrels positives, 25% sampled negatives, 25% hard negatives at ranks 1-5 and 25% at ranks 6-10 of a first-stage run (never qrels positives). Example:

  thinkrank distill sample --dataset ../shared/data/scifact/train --bm25 --num-pairs 2000 --output pairs.jsonl
"""


@distill_app.command("sample", help=SAMPLE_HELP)
def sample(
    dataset: Annotated[Path, typer.Option("--dataset", "-d", help="Collection folder (corpus, queries, qrels).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Pairs JSONL to write.")],
    run: Annotated[str | None, typer.Option(help="Run file, or the name of a run in the collection's runs/.")] = None,
    bm25: Annotated[bool, typer.Option("--bm25", help="Build a BM25 run over the collection (thinkrank.retrieval).")] = False,
    depth: Annotated[int, typer.Option(help="--bm25: documents retrieved per query.")] = 100,
    num_pairs: Annotated[int, typer.Option("--num-pairs", "-n", help="Pairs to draw in all.")] = 1000,
    share: Annotated[list[str] | None, typer.Option(
        help="SOURCE=WEIGHT, repeatable; sources: positive, negative, hard:A-B "
             "(default: positive=0.25 negative=0.25 hard:1-5=0.25 hard:6-10=0.25).")] = None,
    negatives: Annotated[str, typer.Option(help="Sampled negatives: auto, random (corpus) or run (deep ranks).")] = "auto",
    deep_band: Annotated[str, typer.Option(help="Ranks of run-sampled negatives, A-B.")] = "11-100",
    min_grade: Annotated[int, typer.Option(help="Lowest qrels grade counted as relevant.")] = 1,
    split: Annotated[str, typer.Option(help="BEIR folders: which qrels/<split>.tsv.")] = "test",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    _sample(**locals())


@friendly_errors
def _sample(**o: Any) -> None:
    from thinkrank.datasets import load_collection
    from thinkrank.distill.records import iter_pair_dicts, write_jsonl
    from thinkrank.distill.sampling import DEFAULT_SHARES, MixConfig, parse_band, sample_pairs

    _check_outputs(o, "output")

    shares = dict(DEFAULT_SHARES) if not o["share"] else _shares(o["share"])
    config = MixConfig(o["num_pairs"], shares, o["negatives"], parse_band(o["deep_band"]), o["min_grade"], o["seed"])
    config.validate()
    collection = load_collection(o["dataset"], split=o["split"])
    run = _run(collection, o["run"], o["bm25"], o["depth"], o["min_grade"])
    result = sample_pairs(collection, run, config)
    write_jsonl(iter_pair_dicts(result.pairs), o["output"])
    _table("sampled pairs", ["source", "requested", "available", "drawn"],
           [[c.source, c.requested, c.available, c.drawn] for c in result.counts])
    _say(f"wrote {len(result.pairs):,} pairs over {result.queries:,} queries to {o['output']}")


def _shares(items: list[str]) -> dict[str, float]:
    shares = {}
    for item in items:
        source, _, weight = item.partition("=")
        try:
            shares[source.strip()] = float(weight)
        except ValueError:
            fail(f"--share takes SOURCE=WEIGHT (e.g. hard:1-5=0.25), got {item!r}")
    return shares


def _run(collection: Any, run: str | None, bm25: bool, depth: int, min_grade: int) -> Any:
    if run and bm25:
        fail("pass --run or --bm25, not both")
    if run:
        from thinkrank.datasets import read_run

        return collection.run(run) if run in collection.runs else read_run(Path(run))
    if not bm25:
        return None
    from thinkrank.retrieval import BM25

    queries = {q: t for q, t in collection.queries.items() if any(g >= min_grade for g in collection.qrels.get(q, {}).values())}
    _say(f"BM25 over {len(collection.corpus):,} documents for {len(queries):,} queries")
    return BM25(collection.corpus).search(queries, depth)


GENERATE_HELP = """Send each pair's Rank1 prompt to a teacher and store its reasoning, resumably.

Every finished trace goes into the SQLite --store at once, keyed by prompt and teacher settings: run the same command again after an interruption and only the missing traces are requested. Teachers:

  api     any OpenAI-compatible server (--base-url, --api-key or $OPENAI_API_KEY), threads + retries + --rpm

  batch   the OpenAI batch format: --batch-requests writes the requests still missing, --batch-results reads result files

  engine  a local thinkrank engine (--model is a model folder, .gguf or hub id)

Example:

  thinkrank distill generate --pairs pairs.jsonl --teacher api --base-url https://api.deepseek.com/v1 --model deepseek-reasoner --store traces.sqlite --output traces.jsonl
"""


@distill_app.command("generate", help=GENERATE_HELP)
def generate(
    pairs: Annotated[Path, typer.Option("--pairs", "-p", help="Pairs JSONL from `distill sample`.")],
    store: Annotated[Path, typer.Option(help="SQLite trace store (created if missing).")],
    model: Annotated[str, typer.Option("--model", "-m", help="Teacher model: API model name or local model.")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Trace JSONL to write (all stored traces of these pairs).")] = None,
    teacher: Annotated[TeacherKind, typer.Option(help="api, batch or engine.")] = TeacherKind.api,
    api: Annotated[Api, typer.Option(help="api/batch: chat or completions endpoint.")] = Api.chat,
    base_url: Annotated[str | None, typer.Option(help="api: server URL ending in /v1 [env OPENAI_BASE_URL].")] = None,
    api_key: Annotated[str | None, typer.Option(help="api: key [env OPENAI_API_KEY].")] = None,
    temperature: Annotated[float, typer.Option(help="Sampling temperature (paper: 0.3).")] = 0.3,
    max_tokens: Annotated[int, typer.Option(help="Most output tokens per trace (paper: 1000).")] = 1000,
    seed: Annotated[int | None, typer.Option(help="Seed (sent to the API; per-prompt seeds for engines).")] = None,
    extra: Annotated[str | None, typer.Option(help='api/batch: extra request fields as JSON, e.g. \'{"top_p": 0.95}\'.')] = None,
    prompt: Annotated[str | None, typer.Option(help="Dataset template (scifact, …) or one with FILL_QUERY_HERE.")] = None,
    concurrency: Annotated[int, typer.Option(help="api: requests in flight.")] = 8,
    rpm: Annotated[float | None, typer.Option(help="api: most requests per minute.")] = None,
    max_retries: Annotated[int, typer.Option(help="api: retries per request (429, 5xx, timeouts).")] = 6,
    backoff: Annotated[float, typer.Option(help="api: first retry delay in seconds (doubles).")] = 1.0,
    timeout: Annotated[float, typer.Option(help="api: seconds to wait for one response.")] = 600.0,
    batch_requests: Annotated[Path | None, typer.Option(help="batch: write the missing requests here.")] = None,
    batch_results: Annotated[list[Path] | None, typer.Option(help="batch: result JSONL to read (repeatable).")] = None,
    engine: Annotated[str, typer.Option(help="engine: auto, transformers, vllm or openai.")] = "auto",
    device: Annotated[str | None, typer.Option(help="engine: cpu, cuda, …")] = None,
    force_answer: Annotated[bool, typer.Option(help="engine: answer chains cut for budget (flagged 'forced').")] = False,
    chunk_size: Annotated[int, typer.Option(help="engine: prompts per batch (stored after each).")] = 32,
    limit: Annotated[int | None, typer.Option(help="Only the first N pairs.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    _generate(**locals())


@friendly_errors
def _generate(**o: Any) -> None:
    from thinkrank.distill.generate import collect_traces, generate_traces, make_jobs
    from thinkrank.distill.records import read_pairs, write_jsonl
    from thinkrank.distill.store import TraceStore

    _check_outputs(o, "output")

    pairs = read_pairs(o["pairs"])[: o["limit"]]
    teacher = _teacher(o)
    jobs = make_jobs(pairs, teacher.settings, o["prompt"])
    with TraceStore(o["store"]) as store:
        report = None
        if o["teacher"] != TeacherKind.batch or o["batch_results"]:
            with ProgressBar("traces", o["quiet"], total=len(jobs)) as bar:
                report = generate_traces(jobs, teacher, store, progress=bar.advance)
            _report_generation(report, teacher)
        if o["teacher"] == TeacherKind.batch and o["batch_requests"]:
            from thinkrank.distill.batch import write_batch_requests

            have = store.existing(j.key for j in jobs)
            n = write_batch_requests([j for j in jobs if j.key not in have], teacher.settings, o["batch_requests"])
            _say(f"wrote {n:,} batch requests to {o['batch_requests']} ({len(have):,} of {len(jobs):,} prompts already answered)")
        if o["output"]:
            records, missing = collect_traces(pairs, store, teacher.settings, o["prompt"])
            write_jsonl(records, o["output"])
            _say(f"wrote {len(records):,} traces to {o['output']}" + (f" ({missing:,} pairs still without a trace)" if missing else ""))
    if report is not None and report.failed:
        fail(f"{report.failed} prompts failed (run the same command again to retry them)", code=1)


def _teacher(o: dict[str, Any]) -> Any:
    from thinkrank.distill.teacher import TeacherSettings

    extra = _json_object(o["extra"]) if o["extra"] else {}
    kind = o["teacher"]
    if kind == TeacherKind.engine:
        from thinkrank.distill.engine_teacher import EngineTeacher
        from thinkrank.engines import load_engine

        options = {"device": o["device"]} if o["device"] else {}
        engine = load_engine(o["model"], o["engine"], **options)
        return EngineTeacher(engine, temperature=o["temperature"], max_tokens=o["max_tokens"],
                             seed=o["seed"] if o["seed"] is not None else 0, force_answer=o["force_answer"],
                             chunk_size=o["chunk_size"])
    settings = TeacherSettings(o["model"], o["api"].value, o["temperature"], o["max_tokens"], o["seed"], extra)
    if kind == TeacherKind.batch:
        from thinkrank.distill.batch import BatchResults

        if not o["batch_requests"] and not o["batch_results"]:
            fail("--teacher batch needs --batch-requests (to write requests) and/or --batch-results (to read results)")
        return BatchResults(settings, list(o["batch_results"] or []))
    from thinkrank.distill.api_teacher import APITeacher

    base_url = o["base_url"] or os.environ.get("OPENAI_BASE_URL")
    if not base_url:
        fail("--teacher api needs --base-url (or OPENAI_BASE_URL), e.g. http://localhost:8000/v1")
    return APITeacher(settings, base_url=base_url, api_key=o["api_key"] or os.environ.get("OPENAI_API_KEY"),
                      concurrency=o["concurrency"], rpm=o["rpm"], max_retries=o["max_retries"],
                      backoff=o["backoff"], timeout=o["timeout"])


def _report_generation(report: Any, teacher: Any) -> None:
    rows = [["prompts", report.prompts], ["already stored", report.cached], ["generated now", report.generated],
            ["failed", report.failed], ["still missing", report.remaining]]
    if getattr(teacher, "retries", 0):
        rows.append(["retries", teacher.retries])
    if getattr(teacher, "unknown", 0):
        rows.append(["results for other prompts", teacher.unknown])
    _table(f"teacher {teacher.settings.model} ({report.seconds:.1f}s)", ["", "count"], rows)
    for error in report.errors:
        _say(f"  {error}")


FILTER_HELP = """Filter traces into training data and export it.

Stages: the answer parses (true/false after a closed or forced-closed chain), the chain is not empty, the answer was not forced (--keep-forced keeps forced ones), the answer agrees with the label, optionally a trained model agrees (--self-filter), optionally classes are balanced. Writes prompt/completion JSONL for `thinkrank train`, and a LLaMA-Factory dataset with --llamafactory. Example:

  thinkrank distill filter --traces traces.jsonl --output train.jsonl --report filter.json
"""


@distill_app.command("filter", help=FILTER_HELP)
def filter_(
    traces: Annotated[Path, typer.Option("--traces", "-t", help="Trace JSONL from `distill generate`.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="prompt/completion JSONL to write.")],
    llamafactory: Annotated[Path | None, typer.Option(help="Also write a LLaMA-Factory dataset folder.")] = None,
    report: Annotated[Path | None, typer.Option(help="Write the per-stage counts as JSON.")] = None,
    require_reasoning: Annotated[bool, typer.Option(help="Drop traces with an empty chain.")] = True,
    keep_forced: Annotated[bool, typer.Option(help="Keep answers read after a chain was cut for budget.")] = False,
    agree: Annotated[bool, typer.Option(help="Keep only traces whose answer matches the label.")] = True,
    self_filter: Annotated[str | None, typer.Option(help="A trained Rank1 model; drop traces it disagrees with.")] = None,
    self_filter_reasoning: Annotated[Switch, typer.Option(help="Self-filter model: reason (on) or answer directly (off).")] = Switch.on,
    self_filter_budget: Annotated[int, typer.Option(help="Self-filter model: most reasoning tokens.")] = THINK_BUDGET,
    self_filter_engine: Annotated[str, typer.Option(help="Self-filter model's engine.")] = "auto",
    balance: Annotated[float | None, typer.Option(help="Negatives per positive after filtering (e.g. 1.0).")] = None,
    seed: Annotated[int, typer.Option(help="Seed for balancing.")] = 0,
) -> None:
    _filter(**locals())


@friendly_errors
def _filter(**o: Any) -> None:
    from thinkrank.distill.export import sft_examples, write_llamafactory, write_sft_jsonl
    from thinkrank.distill.filtering import FilterConfig, filter_traces
    from thinkrank.distill.records import read_records, write_json

    _check_outputs(o, "output", "report")

    records = read_records(o["traces"])
    config = FilterConfig(o["require_reasoning"], o["keep_forced"], o["agree"], o["balance"], o["seed"])
    judge = None
    if o["self_filter"]:
        from thinkrank.distill.self_filter import rank1_judge

        judge = rank1_judge(o["self_filter"], engine=o["self_filter_engine"],
                            reasoning=o["self_filter_reasoning"] == Switch.on, think_budget=o["self_filter_budget"])
    result = filter_traces(records, config, judge)
    examples = sft_examples(result.records)
    write_sft_jsonl(examples, o["output"])
    _table("filter", ["stage", "kept", "dropped", "positives", "negatives"],
           [[s.name, s.kept, s.dropped, s.positives, s.negatives] for s in result.stages])
    _say(f"wrote {len(examples):,} training examples to {o['output']}")
    if o["llamafactory"]:
        write_llamafactory(examples, o["llamafactory"])
        _say(f"wrote a LLaMA-Factory dataset to {o['llamafactory']} (dataset: rank1_distill, template: empty)")
    if o["report"]:
        write_json(result.to_dict(), o["report"])
    if not examples:
        from thinkrank.distill.filtering import empty_result_message

        fail(empty_result_message(result.stages), code=1)


# ---- output helpers -------------------------------------------------------------------------
def _check_outputs(o: dict[str, Any], *names: str) -> None:
    """Output files that cannot be written fail now, not after sampling, generating or filtering."""
    from thinkrank.cli.common import check_output_file

    for name in names:
        if o.get(name):
            check_output_file(Path(o[name]), "--" + name.replace("_", "-"))


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        fail(f"--extra must be a JSON object: {exc.msg}")
    if not isinstance(value, dict):
        fail("--extra must be a JSON object, e.g. '{\"top_p\": 0.95}'")
    return value


def _say(message: str) -> None:
    typer.echo(message, err=True)


def _table(title: str, header: list[str], rows: list[list[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for name in header:
        table.add_column(name, justify="left" if name in ("source", "stage", "") else "right")
    for row in rows:
        table.add_row(*[f"{v:,}" if isinstance(v, int) else str(v) for v in row])
    Console(stderr=True).print(table)
