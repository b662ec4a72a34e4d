"""Stage 2, targets: what each arm learns to write after the Rank1 prompt.

* ``direct``: the label right after a closed chain (``"\\n</think> true"``), what Rank1 reads
  with reasoning off.
* ``chains``: the base model's own chains (the model as its own teacher, through
  ``thinkrank.distill``), kept only when the answer read after the chain agrees with the label
  (the Rank1 paper's filter). A 135M model almost never closes ``</think>`` by itself, so a
  chain cut at its budget is closed and answered the way Rank1 does at inference
  (``force_answer``) and kept (``keep_forced``).

Passages are cut to ``passage_tokens`` with the same function Rank1 uses, so training prompts
are the prompts the model is scored on.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Self

from thinkrank.distill import (
    EngineTeacher,
    FilterConfig,
    LabeledPair,
    TraceStore,
    collect_traces,
    filter_traces,
    generate_traces,
    make_jobs,
    pair_prompt,
    sft_examples,
    write_sft_jsonl,
)
from thinkrank.recipes.config import RecipeConfig
from thinkrank.rerankers.truncation import truncate_passage


def cut_passages(pairs: Sequence[LabeledPair], tokenizer: Any, max_tokens: int) -> list[LabeledPair]:
    return [replace(p, passage=truncate_passage(tokenizer, p.passage, max_tokens)[0]) for p in pairs]


def direct_examples(pairs: Sequence[LabeledPair]) -> list[dict[str, Any]]:
    """Each pair's prompt with the label as the answer after an empty (closed) chain."""
    records = [{**p.to_dict(), "prompt": pair_prompt(p), "reasoning": "", "answer": "true" if p.label else "false"}
               for p in pairs]
    return sft_examples(records)


def chain_examples(pairs: Sequence[LabeledPair], engine: Any, config: RecipeConfig, folder: Path) -> dict[str, Any]:
    """Generate (resumably, into ``traces.sqlite``) and filter the base model's chains; write
    ``chains.jsonl`` (possibly empty) and return the filter's stage counts."""
    teacher = EngineTeacher(engine, temperature=config.chain_temperature, max_tokens=config.chain_tokens,
                            seed=config.seed, force_answer=True, chunk_size=8)
    jobs = make_jobs(pairs, teacher.settings)
    with TraceStore(folder / "traces.sqlite") as store:
        with _bar(len(jobs), "chains", config.progress) as bar:
            generate_traces(jobs, teacher, store, progress=bar.update)
        records, missing = collect_traces(pairs, store, teacher.settings)
    result = filter_traces(records, FilterConfig(keep_forced=True, agree_with_label=True))
    examples = sft_examples(result.records)
    (folder / "chains.jsonl").write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in examples))
    return {**result.to_dict(), "pairs": len(pairs), "not_generated": missing}


def build_targets(config: RecipeConfig, pairs: Sequence[LabeledPair], folder: Path) -> dict[str, Any]:
    """Write ``direct.jsonl`` and/or ``chains.jsonl`` (+ ``traces.sqlite``) and ``targets.json``."""
    from thinkrank.engines import load_engine

    folder.mkdir(parents=True, exist_ok=True)
    engine = load_engine(config.model, "transformers", device=config.device or "cpu",
                         dtype=config.dtype)
    pairs = cut_passages(pairs, engine.tokenizer, config.passage_tokens)
    summary: dict[str, Any] = {}
    if "direct" in config.arms:
        summary["direct"] = {"examples": write_sft_jsonl(direct_examples(pairs), folder / "direct.jsonl")}
    if "chains" in config.arms:
        summary["chains"] = chain_examples(pairs[: config.chain_pairs], engine, config, folder)
    (folder / "targets.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


class _bar:
    """A tqdm bar on stderr (or nothing), usable as ``progress=bar.update``."""

    def __init__(self, total: int, desc: str, show: bool) -> None:
        self.tqdm = None
        if show:
            from tqdm.auto import tqdm  # type: ignore[import-untyped]

            self.tqdm = tqdm(total=total, desc=desc, unit="pair")

    def update(self, n: int) -> None:
        if self.tqdm is not None:
            self.tqdm.update(n)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.tqdm is not None:
            self.tqdm.close()
