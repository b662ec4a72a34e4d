"""``thinkrank rerank``: rerank documents for one or more queries and print the judgments."""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from thinkrank.cli import calibration_options, options, ray_options
from thinkrank.cli.common import ProgressBar, fail, friendly_errors, reranker_spec
from thinkrank.cli.ray_options import GpusPerWorker, RayAddress, Workers
from thinkrank.declare import bounds


class Format(str, Enum):
    table = "table"
    jsonl = "jsonl"
    trec = "trec"


def register(app: typer.Typer) -> None:
    app.command("rerank", help=RERANK_HELP)(rerank)


RERANK_HELP = """Rerank documents for a query with a reasoning reranker.

Documents come from --docs: JSONL records {"id", "text", "title"?} (add "qid" to give each query its own candidates) or plain text, one document per line. Each document gets a score in [0, 1] and the model's reasoning. Examples:

  thinkrank rerank --model jhu-clsp/rank1-7b --query "what is a cat" --docs docs.jsonl

  thinkrank rerank --model ./model.gguf --queries queries.jsonl --docs docs.jsonl --format jsonl

  thinkrank rerank --model jhu-clsp/rank1-7b --queries queries.jsonl --docs docs.jsonl --cascade top=20 --cache judgments.sqlite

Any family works (thinkrank families): --family reasonrank (listwise), --family rank-r1 (setwise: --method, --sort-k, --num-child, --shuffle), e.g.

  thinkrank rerank --family rank-r1 --query "what is a cat" --docs docs.jsonl --format jsonl
"""


@options.command(lambda **opts: _rerank(**opts), {"top_n": ("family", *options.HEAD), "ray": options.SAMPLING + options.LISTWISE + options.SETWISE + options.ENGINE})
def rerank(
    docs: Annotated[Path, typer.Option("--docs", help="JSONL {id,text,title?[,qid]} or plain text, one per line; - reads standard input.")],
    query: Annotated[str | None, typer.Option("--query", "-q", help="The query text.")] = None,
    queries: Annotated[
        Path | None, typer.Option("--queries", help="JSONL {id?, text, instruction?} or plain text, one per line; - reads standard input.")
    ] = None,
    top_n: Annotated[int | None, typer.Option("--top-n", "-k", help="Print only the best K per query."), bounds(1)] = None,
    output_format: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.table,
    cache: Annotated[Path | None, typer.Option(help="SQLite judgment cache file (as evaluate's): judgments found "
                                               "there are read back, new ones saved as they are computed.")] = None,
    calibration: calibration_options.CalibrationFile = None,
    select: calibration_options.Select = None,
    ray: RayAddress = None,
    workers: Workers = None,
    gpus_per_worker: GpusPerWorker = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """The command's own flags; the reranker's and engine's come from their declarations."""


@friendly_errors
def _rerank(**opts: Any) -> None:
    from thinkrank.cli.checks import check_numbers
    from thinkrank.cli.common import given_options, quiet_libraries
    from thinkrank.cli.inputs import STDIN, QueryInput, check_requests, read_docs, read_queries
    from thinkrank.rerankers.base import RerankRequest

    quiet_libraries(opts["quiet"])
    if (opts["query"] is None) == (opts["queries"] is None):
        fail("give exactly one of --query TEXT or --queries FILE")
    if opts["queries"] == opts["docs"] == STDIN:
        fail("--docs - and --queries - both read standard input; give one of them as a file")
    check_numbers(opts, rerank)
    options.check(opts, given_options())
    spec = reranker_spec(opts)  # every setting checked before files are read or a model loads
    ray_options.check(opts)
    query_list = [QueryInput(opts["query"], "0")] if opts["query"] is not None else read_queries(opts["queries"])
    docs = read_docs(opts["docs"])
    requests = [RerankRequest(q.text, docs.for_query(q), q.id, q.instruction) for q in query_list]
    check_requests(requests)  # before the model loads
    if opts["output_format"] == Format.trec:
        _check_trec_ids(requests)  # before the model loads, not after the reranking
    cal, selection = calibration_options.load(opts)  # a bad file or --select fails before the model loads
    cache = _open_cache(opts["cache"])  # a bad cache file fails before the model loads
    try:
        with ProgressBar("reranking", opts["quiet"], transient=True) as progress:
            reranker = _reranker(opts, spec, cache, progress)
            try:
                if cal is not None and opts["ray"] is None:
                    cal.check_settings(reranker.settings)  # before any judging
                rankings = reranker.rerank_many(requests)
                if cal is not None:
                    cal.check_settings(reranker.settings)  # on Ray the settings come from the workers
                    cal.apply(rankings)
            finally:
                ray_options.close(reranker)
    finally:
        if cache is not None:
            cache.close()
    if cache is not None and not opts["quiet"]:
        unit = "judgments" if spec.judges == "pair" else "query rankings"
        print(f"judgment cache {opts['cache']}: {reranker.use.computed} {unit} computed, {reranker.use.cached} read "
              "from the cache", file=sys.stderr)
    if opts["cascade"] is not None and not opts["quiet"]:
        _report_cascade(rankings)
    summary = unparsed_summary(rankings)
    if summary:
        typer.secho(summary, fg=typer.colors.YELLOW, err=True)
    if selection is not None:
        rankings = _selected(rankings, cal, selection)
    _print([r.truncate(opts["top_n"]) for r in rankings], opts["output_format"])


def _selected(rankings: list[Any], cal: Any, selection: dict[str, float]) -> list[Any]:
    """Each ranking cut to the documents the selection keeps, with one line per query on stderr."""
    from thinkrank.types import Ranking

    out = []
    for ranking in rankings:
        chosen = ranking.select(cal, **selection)
        recall = "–" if chosen.expected_recall is None else f"{chosen.expected_recall:.3f}"
        precision = "–" if chosen.expected_precision is None else f"{chosen.expected_precision:.3f}"
        print(f"select: query {ranking.query_id}: kept {len(chosen.kept)} of {chosen.candidates} (expected recall "
              f"{recall}, precision {precision})", file=sys.stderr)
        out.append(Ranking(ranking.query, chosen.kept, ranking.query_id, ranking.windows, ranking.comparisons))
    return out


def _open_cache(path: Path | None) -> Any:
    if path is None:
        return None
    from thinkrank.cache import JudgmentCache
    from thinkrank.cli.common import check_output_file

    check_output_file(path, "--cache")
    return JudgmentCache(path)


def _reranker(opts: dict[str, Any], spec: Any, cache: Any, progress: ProgressBar) -> Any:
    """The reranker the options describe: in process or on Ray, behind the judgment cache when
    there is one (on Ray the actors read and write it themselves)."""
    from thinkrank.rerankers.spec import build_reranker

    if opts["ray"] is not None:
        return ray_options.ray_reranker(opts, build_in_worker, judges=spec.judges, progress=progress,
                                        cache=cache.path if cache is not None else None)
    if cache is None:
        return build_reranker(spec, progress=progress)
    from thinkrank.rerankers.cached import CachedReranker
    from thinkrank.rerankers.lazy import LazyReranker

    # Lazy: a rerun whose judgments are all in the cache never loads the model.
    return CachedReranker(LazyReranker(spec, cache), cache, progress=progress)


def _report_cascade(rankings: list[Any]) -> None:
    from thinkrank.rerankers.cascade import cascade_stats

    for ranking in rankings:
        s = cascade_stats(ranking)
        print(f"cascade: query {ranking.query_id}: {s.chains} of {s.candidates} candidates reasoned, "
              f"{s.chain_tokens} chain tokens, ~{s.tokens_saved} saved", file=sys.stderr)


def _check_trec_ids(requests: list[Any]) -> None:
    from thinkrank.types import Ranking, as_documents, check_trec_field, trec_lines

    trec_lines([Ranking(r.query, [], r.query_id) for r in requests])  # repeated or unwritable query ids
    for r in requests:
        for doc in as_documents(r.documents):
            check_trec_field(doc.id, "document id")


def unparsed_summary(rankings: list[Any], where: str = "--format jsonl") -> str | None:
    """A warning counting listwise windows whose output held no ordering and setwise comparisons
    whose answer named no document, or None; ``where`` says where the traces can be read
    (rerank: --format jsonl; evaluate: its rankings.jsonl)."""
    lines = []
    unparsed = sum(r.unparsed_windows for r in rankings)
    if unparsed:
        total = sum(len(r.windows) for r in rankings)
        lines.append(f"warning: {unparsed} of {total} listwise windows had no usable ordering in the model's output "
                     f"and kept their previous order (see each window's `parsed` in {where})")
    unexpected = sum(r.unexpected_comparisons for r in rankings)
    if unexpected:
        total = sum(len(r.comparisons) for r in rankings)
        lines.append(f"warning: {unexpected} of {total} setwise comparisons had an unexpected answer and kept the "
                     f"parent, as released (see each comparison's `fallback` and `detail` in {where})")
    return "\n".join(lines) or None



def build_in_worker(opts: dict[str, Any]) -> Any:
    """The reranker a Ray actor builds (``--ray``): the same spec as in process, without a
    progress bar. The spec is rebuilt from the options in the actor (options pickle; a spec's
    read-only mappings do not)."""
    from thinkrank.rerankers.spec import build_reranker

    return build_reranker(reranker_spec(opts))


def _print(rankings: list[Any], fmt: Format) -> None:
    out = sys.stdout
    if fmt == Format.trec:
        from thinkrank.types import trec_lines

        lines = trec_lines(rankings)  # checks ids and repeated query ids before printing anything
        out.write("".join(line + "\n" for line in lines))
    elif fmt == Format.jsonl:
        for ranking in rankings:
            for rank, j in enumerate(ranking, 1):
                record = {"query_id": ranking.query_id, "query": ranking.query, "rank": rank, "index": j.index,
                          "id": j.doc_id, **{k: v for k, v in j.to_dict().items() if k not in ("doc_id", "index")}}
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
            for w in ranking.windows:
                out.write(json.dumps({"query_id": ranking.query_id, "window": w.to_dict()}, ensure_ascii=False) + "\n")
            for c in ranking.comparisons:
                out.write(json.dumps({"query_id": ranking.query_id, "comparison": c.to_dict()}, ensure_ascii=False)
                          + "\n")
    else:
        _print_table(rankings)


def _print_table(rankings: list[Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for ranking in rankings:
        table = Table(title=f"{ranking.query_id or ''} {ranking.query}".strip(), show_lines=True)
        for col in ("rank", "id", "score", "answer", "flags", "reasoning"):
            table.add_column(col, overflow="fold")
        for rank, j in enumerate(ranking, 1):
            flags = ",".join([f for f in ("forced", "truncated") if getattr(j, f)]
                             + (["unreasoned"] if j.reasoned is False and j.quick_score is not None else []))
            if j.tie_group is not None and sum(o.tie_group == j.tie_group for o in ranking) > 1:
                flags = ",".join(x for x in (flags, f"tie {j.tie_group}") if x)
            chain = " ".join(j.reasoning.split())
            table.add_row(str(rank), j.doc_id, f"{j.score:.4f}", j.answer or "", flags,
                          chain[:300] + ("…" if len(chain) > 300 else ""))
        console.print(table)
