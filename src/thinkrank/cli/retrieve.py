"""``thinkrank retrieve``: first-stage BM25 or dense retrieval over a collection folder, written as a run."""

from __future__ import annotations

import sys
import time
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from thinkrank.cli.common import fail, friendly_errors
from thinkrank.declare import bounds


class Method(str, Enum):
    bm25 = "bm25"
    dense = "dense"


RETRIEVE_HELP = """Retrieve the top K documents per query with BM25 or a dense model, and write a run.

--dataset is a collection folder (corpus.jsonl, queries.jsonl, qrels.trec or BEIR qrels/<split>.tsv; a split sub-folder such as scifact/train finds the corpus in its parent). The output format follows the extension: .json is run JSON {qid: {docid: score}}, .jsonl is rank_llm request JSONL (with the document texts), anything else a TREC run. With judgments, the run's scores are printed on stderr. Examples:

  thinkrank retrieve --dataset ../shared/data/scifact --method bm25 --top-k 100 --output runs/scifact-bm25.trec

  thinkrank retrieve --dataset ../shared/data/vaswani --method dense --model ./all-MiniLM-L6-v2 --output vaswani-dense.trec
"""


def register(app: typer.Typer) -> None:
    app.command("retrieve", help=RETRIEVE_HELP)(retrieve)


def retrieve(
    dataset: Annotated[Path, typer.Option("--dataset", "-d", help="Collection folder.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Run file to write (.trec, .json or .jsonl).")],
    method: Annotated[Method, typer.Option(help="bm25 (bm25s) or dense (sentence-transformers).")] = Method.bm25,
    model: Annotated[str | None, typer.Option("--model", "-m", help="dense: model folder or Hub id.")] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="Documents per query."), bounds(1)] = 100,
    split: Annotated[str, typer.Option(help="BEIR folders: which qrels/<split>.tsv to use.")] = "test",
    all_queries: Annotated[bool, typer.Option("--all-queries", help="All queries, not only the judged ones.")] = False,
    limit: Annotated[int | None, typer.Option(help="Only the first N queries (a quick look)."), bounds(1)] = None,
    tag: Annotated[str | None, typer.Option(help="Run tag in TREC output.  [default: the method]")] = None,
    k1: Annotated[float, typer.Option(help="bm25: term saturation."), bounds(0.0)] = 1.5,
    b: Annotated[float, typer.Option(help="bm25: length normalisation."), bounds(0.0, 1.0)] = 0.75,
    batch_size: Annotated[int, typer.Option(help="dense: texts encoded together."), bounds(1)] = 64,
    device: Annotated[str | None, typer.Option(help="dense: cpu, cuda, cuda:1, …")] = None,
    evaluate: Annotated[bool, typer.Option(help="Print nDCG@10, R@100, … on stderr when there are judgments.")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress output.")] = False,
) -> None:
    _retrieve(**locals())


@friendly_errors
def _retrieve(**opts: Any) -> None:
    from thinkrank.cli.checks import check_method_options, check_numbers
    from thinkrank.cli.common import check_output_file, given_options, quiet_libraries
    from thinkrank.datasets import load_collection

    quiet_libraries(opts["quiet"])
    check_numbers(opts, retrieve)
    check_method_options(given_options(), opts["method"].value)
    if opts["method"] == Method.dense and not opts["model"]:
        fail("--method dense needs --model (a sentence-transformers folder or Hub id)")
    check_output_file(opts["output"], "--output")  # before indexing, not after
    say = _Say(opts["quiet"])
    collection = load_collection(opts["dataset"], split=opts["split"])
    selected = collection if opts["all_queries"] or not collection.qrels else collection.judged()
    queries = dict(list(selected.queries.items())[: opts["limit"]]) if opts["limit"] is not None else selected.queries
    say(f"{collection.name}: {len(collection.corpus):,} documents, {len(queries):,} queries")
    retriever = _build(opts, collection, say)
    say(f"retrieving the top {opts['top_k']} for {len(queries):,} queries")
    run = retriever.search(queries, opts["top_k"], name=opts["tag"] or opts["method"].value)
    _write(run, collection, opts["output"])
    say(f"wrote {sum(len(d) for d in run.rankings.values()):,} results to {opts['output']}")
    if opts["evaluate"] and collection.qrels:
        _report(run, collection)


def _build(opts: dict[str, Any], collection: Any, say: _Say) -> Any:
    start = time.perf_counter()
    retriever: Any
    if opts["method"] == Method.dense:
        from thinkrank.retrieval.dense import DenseRetriever

        say(f"encoding the corpus with {opts['model']}")
        retriever = DenseRetriever(opts["model"], collection.corpus, batch_size=opts["batch_size"],
                                   device=opts["device"], progress=not opts["quiet"])
    else:
        from thinkrank.retrieval.bm25 import BM25

        say("indexing the corpus with BM25")
        retriever = BM25(collection.corpus, k1=opts["k1"], b=opts["b"], progress=not opts["quiet"])
    say(f"indexed in {time.perf_counter() - start:.1f}s")
    return retriever


def _write(run: Any, collection: Any, output: Path) -> None:
    suffix = output.suffixes[-2] if output.suffix == ".gz" and len(output.suffixes) > 1 else output.suffix
    if suffix == ".json":
        from thinkrank.datasets.runs import write_json_run

        write_json_run(run, output)
    elif suffix == ".jsonl":
        from thinkrank.datasets.rank_llm import requests_from_run, write_rank_llm

        write_rank_llm(requests_from_run(run, collection.queries, collection.corpus), output)
    else:
        from thinkrank.datasets.runs import write_trec_run

        write_trec_run(run, output)


def _report(run: Any, collection: Any) -> None:
    from thinkrank.evaluation.metrics import evaluate_run

    metrics = evaluate_run(run, collection.qrels, exclude=collection.excluded or None)
    scores = "  ".join(f"{name} {value:.4f}" for name, value in metrics.aggregate.items())
    typer.echo(f"{run.name} on {collection.name} ({len(metrics.per_query)} queries): {scores}", err=True)


class _Say:
    """Progress lines on stderr, silenced by --quiet."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def __call__(self, message: str) -> None:
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)
