"""What a family's reranker would give its model first, without a model: ``thinkrank prompt``.

:func:`first_inputs` builds, in call order, the inputs a family's reranker (with its default
settings) sends for one query: every pair for a pointwise family, the first window of the
first pass for a listwise one (the later windows depend on the model's answers), the first
comparison for a setwise one. Passages are cut as the reranker cuts them only when a tokenizer
is given (the cuts count tokens).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from thinkrank.families.base import ModelInput
from thinkrank.families.registry import FamilyEntry

def first_inputs(
    entry: FamilyEntry,
    query: str,
    passages: Sequence[str],
    instruction: str | None = None,
    *,
    model: str = "",
    tokenizer: Any = None,
) -> list[ModelInput]:
    """The inputs ``entry``'s reranker makes first for ``query`` over ``passages``, in call order.

    ``model`` picks a family's prompt mode (ReasonRank's reasonrank-8B); ``tokenizer`` (a
    :class:`~thinkrank.engines.loading.HFTokenizer`) turns on the default passage cuts.

    Raises:
        InvalidInputError: an empty query or a bad passage (from the family's builder).
    """
    if entry.kind == "pair":
        return _pair_inputs(entry, query, passages, instruction, tokenizer)
    if entry.kind == "query":
        return _window_inputs(entry, query, passages, instruction, model, tokenizer)
    return _set_inputs(query, passages, instruction, tokenizer)


def _pair_inputs(entry: FamilyEntry, query: str, passages: Sequence[str], instruction: str | None,
                 tokenizer: Any) -> list[ModelInput]:
    module = entry.module()
    if module is not None:  # the released builders take the pair whole (no passage cut of their own)
        return [module.FAMILY.build(query, p, instruction) for p in passages]
    from thinkrank.prompts.rank1 import PASSAGE_TOKENS, Rank1Prompt
    from thinkrank.rerankers.truncation import truncate_passage

    template = Rank1Prompt.create(query, None, instruction)
    cut = PASSAGE_TOKENS if tokenizer is not None else None  # Rank1's default cut
    return [ModelInput(prompt=template.render(truncate_passage(tokenizer, p, cut)[0])) for p in passages]


def _window_inputs(entry: FamilyEntry, query: str, passages: Sequence[str], instruction: str | None, model: str,
                   tokenizer: Any) -> list[ModelInput]:
    from thinkrank.families.window import window_family
    from thinkrank.prompts import rankk

    family = window_family(entry.name, model)
    spans = family.plan(len(passages), rankk.WINDOW, rankk.STRIDE, rankk.DEPTH)  # RankK's defaults
    if not spans:
        return []
    joined = " ".join(x.strip() for x in (query, instruction) if x and x.strip())
    start, end = spans[0]
    cut = rankk.PASSAGE_TOKENS if tokenizer is not None else None  # RankK's default cut
    return [family.build(joined, [family.shown(tokenizer, p, cut)[0] for p in passages[start:end]])]


def _set_inputs(query: str, passages: Sequence[str], instruction: str | None, tokenizer: Any) -> list[ModelInput]:
    from thinkrank.families import rank_r1
    from thinkrank.families.truncation import token_truncation

    sort = rank_r1.SetwiseSort(len(passages))  # RankR1's defaults: heapsort, top 10, sets of 20, seed 0
    if sort.pending is None:
        return []
    if tokenizer is not None:
        cut = token_truncation(getattr(tokenizer, "hf", tokenizer), rank_r1.PASSAGE_TOKENS)
        passages = [cut(p) for p in passages]
    return [rank_r1.comparison_input(query, passages, sort.pending, instruction=instruction)]
