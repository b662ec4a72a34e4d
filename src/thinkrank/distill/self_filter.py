"""The paper's self-filter: a Rank1 model trained on a first mix judges every trace's pair, and
traces where it disagrees with the teacher are dropped (mostly false negatives, §2.2)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from thinkrank.distill.filtering import Record, SelfJudge
from thinkrank.types import Document


def rank1_judge(model: str | None = None, *, engine: Any = "auto", reasoning: bool = True,
                think_budget: int = 1024, batch: int = 256, **options: Any) -> SelfJudge:
    """A judge backed by :class:`~thinkrank.Rank1`: its answer (``"true"``/``"false"``) per record.

    Each record is judged with the dataset template its trace was made with. ``model`` is
    anything ``Rank1`` loads (ignored when ``engine`` is an engine instance); ``options`` go
    to ``Rank1``.
    """
    from thinkrank.rerankers.pointwise import Pair, Rank1

    rerankers: dict[str | None, Rank1] = {}

    def judge(records: Sequence[Record]) -> list[str]:
        answers: list[str] = [""] * len(records)
        by_template: dict[str | None, list[int]] = {}
        for i, record in enumerate(records):
            by_template.setdefault(record.get("template"), []).append(i)
        for template, idx in by_template.items():
            if template not in rerankers:
                kwargs = dict(options)
                if model is not None:
                    kwargs["model"] = model
                if rerankers:  # one engine for all templates: reuse the first reranker's
                    kwargs.pop("model", None)
                    shared = next(iter(rerankers.values())).engine
                else:
                    shared = engine
                rerankers[template] = Rank1(engine=shared, reasoning=reasoning, think_budget=think_budget,
                                            prompt=template, max_passage_tokens=None, **kwargs)
            reranker = rerankers[template]
            for start in range(0, len(idx), batch):
                part = idx[start:start + batch]
                pairs = [Pair(str(records[i]["query"]), Document(str(records[i]["docid"]), str(records[i]["passage"])), i)
                         for i in part]
                for i, judgment in zip(part, reranker.judge(pairs)):
                    answers[i] = str(judgment.answer)
        return answers

    return judge
