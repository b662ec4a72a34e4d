"""Every reranker family thinkrank knows, by the name the CLI takes: a small table.

An entry says what a family is (kind, released source, default model, the released settings
that differ from its reranker class's defaults) and which reranker class serves it. Family
modules are imported when an entry is loaded (:meth:`FamilyEntry.module`), reranker classes
when asked for (:meth:`FamilyEntry.reranker_class`), so reading the table stays cheap.

Adding a family: one module under :mod:`thinkrank.families` and one line of :data:`FAMILIES`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from thinkrank.errors import InvalidInputError
from thinkrank.families.base import Kind, Source

RERANKERS: dict[Kind, str] = {
    "pair": "thinkrank.rerankers.pointwise:Rank1",
    "query": "thinkrank.rerankers.listwise:RankK",
    "set": "thinkrank.rerankers.setwise:RankR1",
}
"""The reranker class serving each kind (``module:Class``)."""


@dataclass(frozen=True)
class FamilyEntry:
    """One family. ``defaults``: the released settings that differ from the serving reranker
    class's defaults, by that class's argument names (empty: the class's defaults are the
    released ones). ``module``: the family module (None where the family lives in the reranker
    itself: Rank1, Rank-K). ``unavailable``: why thinkrank cannot serve it (None: it can)."""

    name: str
    kind: Kind
    source: Source
    default_model: str | None
    description: str
    defaults: dict[str, Any] = field(default_factory=dict)
    module_name: str | None = None
    unavailable: str | None = None

    @property
    def reranker(self) -> str:
        """The serving reranker class, ``module:Class``."""
        return RERANKERS[self.kind]

    def reranker_class(self) -> type:
        """The serving reranker class, imported."""
        module, name = self.reranker.split(":")
        cls: type = getattr(importlib.import_module(module), name)
        return cls

    def module(self) -> ModuleType | None:
        """The family module, imported (None for Rank1 and Rank-K)."""
        return None if self.module_name is None else importlib.import_module(self.module_name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "kind": self.kind, "reranker": self.reranker.split(":")[1],
            "source": {"repository": self.source.repository, "commit": self.source.commit, "path": self.source.path},
            "default_model": self.default_model, "defaults": dict(self.defaults),
            "description": self.description, "available": self.unavailable is None,
            **({"unavailable": self.unavailable} if self.unavailable else {}),
        }


_ERANK_WHY = (
    "erank is not available: its released scoring code lives only in the Hugging Face model repositories "
    "(Alibaba-NLP/ERank-4B|14B|32B, examples/utils.py), whose answer parsing and s x Pr(s) rule could not be read "
    "here, and thinkrank does not write a family from the paper (see docs/families.md, ERank)"
)

FAMILIES: dict[str, FamilyEntry] = {e.name: e for e in (
    FamilyEntry(
        "rank1", "pair",
        Source("orionw/rank1", "30585c2f3166b3df03e3b8f2d496d6dc5db68a9b",
               "rank1.py:rank1.return_prompt; prompts.py:PROMPT_DICT (dataset templates)"),
        "jhu-clsp/rank1-7b",
        "pointwise: a reasoning chain, then exact P(true) after </think>",
        {"think_budget": 8192},
    ),
    FamilyEntry(
        "rank-k", "query",
        Source("hltcoe/rank-k", "ecdf232f239e2d7baa1671aab123abc9c484b7f3",
               "rerank.py:rank_k_prompt, rerank.py:rerank_topic (windows)"),
        "hltcoe/Rank-K-32B",
        "listwise: windows of 20, step 10, a chain then [3] > [2] = [1] orderings with ties",
        {"max_tokens": 4000, "temperature": 0.7, "max_passage_tokens": None},
    ),
    FamilyEntry(
        "qwen3-reranker", "pair",
        Source("QwenLM/Qwen3-Embedding", "f4ad0c434c0e3534494e26a4a6bdfd8ab1431968",
               "README.md:format_instruction (Reranker Model, Transformers Usage), compute_logits"),
        "Qwen/Qwen3-Reranker-0.6B",
        "pointwise, no reasoning: P(yes) after an empty think block",
        {"reasoning": False,
         "instruction": "Given a web search query, retrieve relevant passages that answer the query"},
        "thinkrank.families.qwen3_reranker",
    ),
    FamilyEntry(
        "reasonrank", "query",
        Source("8421BCD/ReasonRank", "06721fd6ef3766c0e00d59a87d2696a0b4b0c17a",
               "rerank/rank_listwise_os_llm.py:RankListwiseOSLLM.create_prompt"),
        "liuwenhan/reasonrank-7B",
        "listwise: windows of 20, step 10, <think> then <answer>[2] > [1]</answer>; "
        "reasonrank-8B samples at 0.6",
        {"max_tokens": 3172},
        "thinkrank.families.reasonrank",
    ),
    FamilyEntry(
        "rank-r1", "set",
        Source("ielab/llm-rankers", "b36517bf17a3956dc56c4c967f972d02390b1cdd",
               "llmrankers/setwise.py:RankR1SetwiseLlmRanker.compare"),
        "ielabgroup/Rank-R1-7B-v0.1",
        "setwise: heapsort over 'which of these 20 is most relevant?', top 10",
        {},
        "thinkrank.families.rank_r1",
    ),
    FamilyEntry(
        "tfrank", "pair",
        Source("JOHNNY-fans/TFRank", "18765965443e1a57c5444fad5b55026a8a9d14bf",
               "evaluation/run_eval.py:build_completion_prompt, get_next_token_probs"),
        None,
        "pointwise, graded 0-4: (expected grade / 4 + P(yes)) / 2",
        {"reasoning": False, "think_budget": 128},
        "thinkrank.families.tfrank",
    ),
    FamilyEntry(
        "erank", "pair",
        Source("hf:Alibaba-NLP/ERank-14B", "c2e0fef", "examples/utils.py, examples/ERank_Transformer.py"),
        "Alibaba-NLP/ERank-4B",
        "pointwise, an integer 0-10, score = s x Pr(s) (not available)",
        unavailable=_ERANK_WHY,
    ),
)}
"""Every family by CLI name, in the order ``thinkrank families`` lists them."""


def family_names(available_only: bool = False) -> list[str]:
    """The families' names (only the ones thinkrank can serve with ``available_only``)."""
    return [name for name, e in FAMILIES.items() if not (available_only and e.unavailable)]


def get_family(name: str) -> FamilyEntry:
    """The family called ``name``.

    Raises:
        InvalidInputError: an unknown name (listing the known ones), or a family thinkrank
            lists but cannot serve (saying why).
    """
    entry = FAMILIES.get(name) if isinstance(name, str) else None
    if entry is None:
        raise InvalidInputError(f"unknown family {name!r}: use one of {', '.join(family_names(True))}")
    if entry.unavailable:
        raise InvalidInputError(entry.unavailable)
    return entry
