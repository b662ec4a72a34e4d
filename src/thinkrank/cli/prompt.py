"""``thinkrank prompt``: print exactly what a family's model would be given, one JSON line per call."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from thinkrank.cli.common import friendly_errors

HELP = (
    "Print exactly what a family's model would be given for one query, one JSON object per line, in call order: "
    '{"messages": [...]} for chat families (rendered with the model\'s chat template), {"prompt": "..."} for '
    'raw-prompt families; with --model also "text" (rendered) and "tokens" (its count). Pointwise: one line per '
    "document. Listwise: the first window only (later windows depend on the model's answers). Setwise: the first "
    "comparison (seed 0). Passages are cut as the reranker cuts them only with --model (cuts count tokens)."
)


def register(app: typer.Typer) -> None:
    app.command("prompt", help=HELP)(prompt)


def prompt(
    family: Annotated[str, typer.Option("--family", help="The family (thinkrank families lists them).")],
    query: Annotated[str, typer.Option("--query", help="The query text.")],
    docs: Annotated[Path, typer.Option("--docs", help="Documents: JSONL {\"id\", \"text\", \"title\"?} or plain text "
                                                      "lines, as `thinkrank rerank --docs` reads them ('-': stdin).")],
    instruction: Annotated[str | None, typer.Option("--instruction", help="An instruction for the query "
                                                                          "(default: the family's).")] = None,
    model: Annotated[str | None, typer.Option("--model", help="A local model folder or hub id whose tokenizer renders "
                                                              "the text and counts its tokens; it also picks the "
                                                              "prompt mode (reasonrank-8B: qwen3).")] = None,
) -> None:
    _prompt(family, query, docs, instruction, model)


@friendly_errors
def _prompt(family: str, query: str, docs: Path, instruction: str | None, model: str | None) -> None:
    from thinkrank.cli.inputs import QueryInput, read_docs
    from thinkrank.families import get_family
    from thinkrank.families.preview import first_inputs
    from thinkrank.types import as_documents, check_query

    entry = get_family(family)
    check_query(query)
    documents = as_documents(read_docs(docs).for_query(QueryInput(query)))
    tokenizer = _tokenizer(model) if model else None
    inputs = first_inputs(entry, query, [d.passage for d in documents], instruction,
                          model=model or "", tokenizer=tokenizer)
    if not inputs:
        typer.echo(f"{family}: {len(documents)} document(s) need no model call", err=True)
    for given in inputs:
        line: dict[str, Any] = ({"prompt": given.prompt} if given.messages is None
                                else {"messages": [dict(m) for m in given.messages]})
        if given.assistant_prefix:
            line["assistant_prefix"] = given.assistant_prefix
        if tokenizer is not None:
            text = given.render(tokenizer.apply_chat_template)
            line["text"] = text
            line["tokens"] = len(tokenizer.encode_prompt(text))
        typer.echo(json.dumps(line, ensure_ascii=False))


def _tokenizer(model: str) -> Any:
    from thinkrank.engines.loading import HFTokenizer, load_tokenizer, resolve_model

    ref = resolve_model(model)
    return HFTokenizer(load_tokenizer(ref), ref.display)
