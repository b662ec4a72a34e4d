"""``thinkrank rerank``: rerank documents for one or more queries and print the judgments."""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from thinkrank.cli import ray_options
from thinkrank.cli.common import ProgressBar, Switch, fail, friendly_errors, reranker_spec
from thinkrank.cli.ray_options import GpusPerWorker, RayAddress, Workers


class Mode(str, Enum):
    pointwise = "pointwise"
    listwise = "listwise"


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
"""


def rerank(
    docs: Annotated[Path, typer.Option("--docs", help="JSONL {id,text,title?[,qid]} or plain text, one per line.")],
    query: Annotated[str | None, typer.Option("--query", "-q", help="The query text.")] = None,
    queries: Annotated[
        Path | None, typer.Option("--queries", help="JSONL {id?, text, instruction?} or plain text, one per line.")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="Hub id, local directory, .gguf file or adapter directory.  "
                     "[default: jhu-clsp/rank1-7b; listwise: hltcoe/Rank-K-32B]"),
    ] = None,
    mode: Annotated[Mode, typer.Option(help="pointwise (Rank1) or listwise (Rank-K).")] = Mode.pointwise,
    reasoning: Annotated[Switch, typer.Option(help="Pointwise: off scores in one forward pass, no chain.")] = Switch.on,
    think_budget: Annotated[int, typer.Option(help="Pointwise: most reasoning tokens per document.")] = 1024,
    cascade: Annotated[
        str | None,
        typer.Option(help="Pointwise: score all without reasoning, reason only about the top M and/or a score band: "
                     "'top=20', 'band=0.2:0.8' or 'top=10,band=0.3:0.7'."),
    ] = None,
    prompt: Annotated[
        str | None, typer.Option(help="Dataset template name (scifact, nfcorpus, bright-pony, …) or a template "
                                 "containing FILL_QUERY_HERE.")
    ] = None,
    instruction: Annotated[str | None, typer.Option(help="Text appended to every query.")] = None,
    top_n: Annotated[int | None, typer.Option("--top-n", "-k", help="Print only the best K per query.")] = None,
    output_format: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.table,
    engine: Annotated[str, typer.Option(help="auto, transformers, vllm or openai.")] = "auto",
    base_url: Annotated[
        str | None, typer.Option(help="openai engine: server URL, e.g. http://localhost:8000/v1 [env OPENAI_BASE_URL]")
    ] = None,
    api_key: Annotated[str | None, typer.Option(help="openai engine: API key [env OPENAI_API_KEY]")] = None,
    tokenizer: Annotated[
        str | None, typer.Option(help="openai/vllm engine: local tokenizer dir or hub id, when the served model "
                                 "name is not loadable")
    ] = None,
    concurrency: Annotated[int | None, typer.Option(help="openai engine: requests in flight at once [default: 8]")] = None,
    max_retries: Annotated[int | None, typer.Option(help="openai engine: retries per request [default: 3]")] = None,
    timeout: Annotated[float | None, typer.Option(help="openai engine: seconds per request [default: 600]")] = None,
    chat: Annotated[bool, typer.Option("--chat", help="openai engine: use /v1/chat/completions for generation")] = False,
    extra_body: Annotated[
        str | None, typer.Option(help='openai engine: extra request fields as JSON, e.g. \'{"top_k": -1}\' (they '
                                 "override the engine's own, such as skip_special_tokens)")
    ] = None,
    context_length: Annotated[
        int | None, typer.Option(help="openai engine: the served model's context, when the server does not report it")
    ] = None,
    reasoning_close: Annotated[
        str, typer.Option(help="Pointwise, reasoning off: bytes closing the empty think block: newline "
                          "('\\n</think>'), bare ('</think>') or empty-chain ('\\n\\n</think>').")
    ] = "newline",
    tensor_parallel_size: Annotated[int | None, typer.Option(help="vllm engine: GPUs per model")] = None,
    gpu_memory_utilization: Annotated[float | None, typer.Option(help="vllm engine: share of GPU memory to use")] = None,
    max_model_len: Annotated[int | None, typer.Option(help="vllm engine: context length")] = None,
    max_passage_tokens: Annotated[int, typer.Option(help="Cut passages to this many tokens (flagged).")] = 2048,
    temperature: Annotated[float, typer.Option(help="0 = greedy (default).")] = 0.0,
    seed: Annotated[int | None, typer.Option(help="Seed for sampling (with --temperature > 0).")] = None,
    window: Annotated[int, typer.Option(help="Listwise: passages per window.")] = 20,
    stride: Annotated[int, typer.Option(help="Listwise: window stride.")] = 10,
    depth: Annotated[int, typer.Option(help="Listwise: how many top candidates to rerank.")] = 100,
    max_tokens: Annotated[int, typer.Option(help="Listwise: most tokens per window (reasoning + ordering).")] = 4096,
    device: Annotated[str | None, typer.Option(help="transformers engine: cpu, cuda, cuda:1, …")] = None,
    batch_size: Annotated[int | None, typer.Option(help="transformers engine: sequences decoded together.")] = None,
    ray: RayAddress = None,
    workers: Workers = None,
    gpus_per_worker: GpusPerWorker = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    _rerank(**locals())


@friendly_errors
def _rerank(**opts: Any) -> None:
    from thinkrank.cli.checks import check_applicable, check_numbers
    from thinkrank.cli.common import given_options, quiet_libraries
    from thinkrank.cli.inputs import QueryInput, check_requests, read_docs, read_queries
    from thinkrank.rerankers.base import RerankRequest
    from thinkrank.rerankers.spec import build_reranker

    quiet_libraries(opts["quiet"])
    if (opts["query"] is None) == (opts["queries"] is None):
        fail("give exactly one of --query TEXT or --queries FILE")
    check_numbers(opts, {"queries": "queries_file"})
    check_applicable(opts, given_options(), listwise=opts["mode"] == Mode.listwise)
    if opts["cascade"] is not None and opts["mode"] == Mode.listwise:
        fail("--cascade is a pointwise option (Rank1); drop it or use --mode pointwise")
    spec = reranker_spec(opts)  # every setting checked before files are read or a model loads
    ray_options.check(opts)
    query_list = [QueryInput(opts["query"], "0")] if opts["query"] is not None else read_queries(opts["queries"])
    docs = read_docs(opts["docs"])
    requests = [RerankRequest(q.text, docs.for_query(q), q.id, q.instruction) for q in query_list]
    check_requests(requests)  # before the model loads
    if opts["output_format"] == Format.trec:
        _check_trec_ids(requests)  # before the model loads, not after the reranking
    with ProgressBar("reranking", opts["quiet"], transient=True) as progress:
        if opts["ray"] is None:
            reranker = build_reranker(spec, progress=progress)
        else:
            reranker = ray_options.ray_reranker(opts, build_in_worker, pointwise=opts["mode"] == Mode.pointwise,
                                                progress=progress)
        try:
            rankings = reranker.rerank_many(requests)
        finally:
            ray_options.close(reranker)
    if opts["cascade"] is not None and not opts["quiet"]:
        _report_cascade(rankings)
    summary = unparsed_summary(rankings)
    if summary:
        typer.secho(summary, fg=typer.colors.YELLOW, err=True)
    _print([r.truncate(opts["top_n"]) for r in rankings], opts["output_format"])


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


def unparsed_summary(rankings: list[Any]) -> str | None:
    """A warning line counting listwise windows whose output held no ordering, or None."""
    total = sum(len(r.windows) for r in rankings)
    unparsed = sum(r.unparsed_windows for r in rankings)
    if not unparsed:
        return None
    return (f"warning: {unparsed} of {total} listwise windows had no usable ordering in the model's output and kept "
            "their previous order (see each window's `parsed` in --format jsonl)")



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
            if ranking.windows:
                for w in ranking.windows:
                    out.write(json.dumps({"query_id": ranking.query_id, "window": w.to_dict()}, ensure_ascii=False) + "\n")
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
