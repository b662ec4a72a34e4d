"""Training data from filtered traces: prompt/completion JSONL and a LLaMA-Factory dataset.

The prompt is the Rank1 prompt, ending in ``<think>``; the completion is what the model must
write after it: the chain, then ``\\n</think> true`` (or ``false``). With an empty chain the
completion is ``\\n</think> true``, exactly what follows the prompt when Rank1 runs with
reasoning off, so the same file trains both kinds of reranker.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from thinkrank.distill.records import write_json, write_jsonl
from thinkrank.errors import InvalidInputError
from thinkrank.prompts.rank1 import THINK_CLOSE

LLAMAFACTORY_DATASET = "rank1_distill"


def completion_text(reasoning: str, answer: str) -> str:
    """``"{chain}\\n</think> {answer}"`` with the chain stripped (empty chain: ``"\\n</think> true"``).

    Raises:
        InvalidInputError: an answer other than true/false, or a chain that contains ``</think>``.
    """
    if answer not in ("true", "false"):
        raise InvalidInputError(f"the answer must be 'true' or 'false', got {answer!r}")
    chain = reasoning.strip()
    if THINK_CLOSE in chain:
        raise InvalidInputError("a reasoning chain must not contain </think>; it closes the chain")
    return f"{chain}\n{THINK_CLOSE} {answer}"


def sft_examples(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """``{prompt, completion, answer, qid, docid, source, label}`` per filtered trace record."""
    out = []
    for r in records:
        out.append({
            "prompt": r["prompt"],
            "completion": completion_text(str(r["reasoning"]), str(r["answer"])),
            "answer": r["answer"],
            "qid": r.get("qid"),
            "docid": r.get("docid"),
            "source": r.get("source"),
            "label": r.get("label"),
        })
    return out


def write_sft_jsonl(examples: Sequence[dict[str, Any]], path: str | Path) -> int:
    """Write prompt/completion JSONL (what ``thinkrank train`` reads); returns the count."""
    return write_jsonl(examples, path)


def write_llamafactory(examples: Sequence[dict[str, Any]], folder: str | Path,
                       name: str = LLAMAFACTORY_DATASET) -> Path:
    """Write an alpaca-style dataset (``instruction`` = prompt, ``input`` = "", ``output`` =
    completion) as ``{name}.json`` plus the ``dataset_info.json`` that registers it; returns the folder.

    Use it with ``dataset_dir: <folder>``, ``dataset: <name>`` and the ``empty`` template, so
    LLaMA-Factory adds nothing around the raw Rank1 prompt.
    """
    folder = Path(folder)
    rows = [{"instruction": e["prompt"], "input": "", "output": e["completion"]} for e in examples]
    write_json(rows, folder / f"{name}.json")
    info = {name: {"file_name": f"{name}.json",
                   "columns": {"prompt": "instruction", "query": "input", "response": "output"}}}
    write_json(info, folder / "dataset_info.json")
    return folder
