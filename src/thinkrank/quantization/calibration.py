"""Calibration text for quantization: what the model will actually read when it reranks.

AWQ picks, per layer, the scales that keep the outputs of the *calibration activations* closest
to the full-precision ones; channels that are large on that text are protected. A reranker only
ever reads Rank1 prompts (instruction, query, passage, ``<think>``) and writes short chains that
end in ``</think> true|false``; generic web text has other salient channels (no passages, no
think tags, no answer tokens). So the default calibration set is in-domain:

* :func:`from_collection`: Rank1 prompts built from a collection's queries and their BM25
  passages (top-ranked and lower-ranked ones, so both relevant and irrelevant passages appear);
* :func:`from_traces`: prompt + reasoning chain + answer, from the prompt/completion JSONL that
  ``thinkrank distill filter`` writes (what ``thinkrank train`` learns from);
* :func:`read_calibration`: your own JSONL (``{"text"}`` or ``{"prompt", "completion"}`` lines);
* :func:`builtin`: without any of these, Rank1 prompts over 24 general query/passage pairs
  shipped with thinkrank (each query with its own passage and with another's), so that a bare
  ``thinkrank quantize`` still calibrates on the prompt format; your own collection is better.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from thinkrank.errors import InvalidInputError
from thinkrank.io import iter_jsonl
from thinkrank.prompts.rank1 import build_rank1_prompt

PASSAGE_WORDS = 300  # a passage is cut to this many words so the prompt keeps its <think> tail


def from_collection(dataset: str | Path, num_samples: int, *, seed: int = 0, template: str | None = None,
                    split: str = "test", depth: int = 20) -> list[str]:
    """``num_samples`` Rank1 prompts from the collection folder ``dataset``: queries drawn at random
    (``seed``), each paired with one passage from its BM25 top ``depth``, alternating between the
    top 3 and the rest. ``template`` is a Table 10 dataset template (``"scifact"``, …).

    Raises:
        InvalidInputError: a bad ``num_samples``; a collection without queries or passages.
        MissingExtraError: bm25s is not installed (``thinkrank[eval]``).
    """
    from thinkrank.datasets import load_collection
    from thinkrank.retrieval.bm25 import bm25_run

    _check_count(num_samples)
    collection = load_collection(dataset, split=split)
    if not collection.queries:
        raise InvalidInputError(f"--dataset {dataset}: the collection has no queries to calibrate on")
    rng = random.Random(seed)
    qids = list(collection.queries)
    rng.shuffle(qids)
    chosen = {q: collection.queries[q] for q in qids[:num_samples]}
    run = bm25_run(collection, depth, queries=chosen)
    texts = []
    for i, qid in enumerate(q for q in chosen if run.doc_ids(q)):
        ranked = run.doc_ids(qid)
        pool = ranked[:3] if i % 2 == 0 or len(ranked) <= 3 else ranked[3:]
        doc = collection.corpus[rng.choice(pool)]
        texts.append(build_rank1_prompt(chosen[qid], _cut(doc.passage), template))
    if not texts:
        raise InvalidInputError(f"--dataset {dataset}: BM25 found no passage for any query; nothing to calibrate on")
    return texts


def from_traces(path: str | Path, num_samples: int, *, seed: int = 0) -> list[str]:
    """``num_samples`` texts ``prompt + completion`` (chain and answer) drawn at random from a
    prompt/completion JSONL (``thinkrank distill filter``'s output).

    Raises:
        InvalidInputError: a missing file, a malformed line, no examples, a bad ``num_samples``.
    """
    from thinkrank.training.data import read_sft

    _check_count(num_samples)
    texts = [e.prompt + e.completion for e in read_sft(path)]
    random.Random(seed).shuffle(texts)
    return texts[:num_samples]


def read_calibration(path: str | Path, num_samples: int, *, seed: int = 0) -> list[str]:
    """Calibration texts from a JSONL file: each line ``{"text": ...}`` or ``{"prompt", "completion"}``.

    Raises:
        InvalidInputError: a missing file, a line with neither form, no text at all.
    """
    _check_count(num_samples)
    texts = []
    for number, obj in iter_jsonl(path):
        text = obj.get("text")
        if text is None and isinstance(obj.get("prompt"), str):
            text = obj["prompt"] + (obj.get("completion") or "")
        if not isinstance(text, str):
            raise InvalidInputError(f"{path}:{number}: each line needs a 'text' string or 'prompt'/'completion' strings")
        if text.strip():
            texts.append(text)
    if not texts:
        raise InvalidInputError(f"--calibration {path} holds no text; give at least one non-empty line")
    random.Random(seed).shuffle(texts)
    return texts[:num_samples]


def builtin(num_samples: int, *, seed: int = 0, template: str | None = None) -> list[str]:
    """Rank1 prompts over the query/passage pairs shipped in ``calibration_pairs.jsonl``: every
    query with its own passage, then with another query's passage (mostly irrelevant), up to
    ``num_samples`` (at most twice the number of pairs)."""
    import json

    _check_count(num_samples)
    text = resources.files("thinkrank.quantization").joinpath("calibration_pairs.jsonl").read_text(encoding="utf-8")
    pairs = [json.loads(line) for line in text.splitlines() if line.strip()]
    rng = random.Random(seed)
    others = [p["passage"] for p in pairs]
    rng.shuffle(others)
    prompts = [build_rank1_prompt(p["query"], p["passage"], template) for p in pairs]
    prompts += [build_rank1_prompt(p["query"], other, template) for p, other in zip(pairs, others)]
    rng.shuffle(prompts)
    return prompts[:num_samples]


def mix(prompts: Sequence[str], chains: Sequence[str], num_samples: int) -> list[str]:
    """Half prompts, half prompt+chain texts (or all of one kind when the other runs short)."""
    half = min(len(chains), num_samples // 2)
    return list(chains[:half]) + list(prompts[: num_samples - half])


def _cut(passage: str) -> str:
    words = passage.split()
    return passage if len(words) <= PASSAGE_WORDS else " ".join(words[:PASSAGE_WORDS])


def _check_count(num_samples: int) -> None:
    if num_samples < 1:
        raise InvalidInputError(f"--num-samples must be >= 1, got {num_samples}")
