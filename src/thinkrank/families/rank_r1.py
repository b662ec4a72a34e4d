"""Rank-R1: a setwise reasoning reranker (ielab/llm-rankers), as released, with its sorts.

One call shows the model a set of up to 20 documents of one query, labelled ``[1]``…``[m]``;
the model reasons and answers ``<think>…</think> <answer>[k]</answer>``: the most relevant
one. A heapsort over such comparisons (each node with 19 children, so sets of 20) brings the
top 10 to the front; the rest keep their first-stage order (``SetwiseLlmRanker.rerank``).

Input. The released ``RankR1SetwiseLlmRanker.compare`` sends a system and a user turn through
the model's chat template (vLLM ``LLM.chat``), documents written ``[i] text`` and joined by one
newline. The document format drifted: the prompt files gained ``doc_prefix = "[{num}]: "`` in
the commit that added v0.2, and ``Rank-R1/run_setwise.py`` now writes ``[i]: text`` for v0.1
too. thinkrank follows the v0.1 models' training data (``Rank-R1/create_dataset.py``), the
package's ``compare()`` and the model cards, which all write ``[i] text``.

Reading. The text inside the first ``<think>…</think>\\s*<answer>…</answer>`` of the
lower-cased output, stripped, must be one of the set's labels ``[1]``…``[m]``; anything else
is "unexpected" and the sort keeps the parent (the current best), as released; thinkrank
returns that as a :class:`~thinkrank.families.base.SetAnswer` with a fallback.

Sorts. :class:`SetwiseSort` is the released heapsort or bubblesort as a state machine: it asks
for one comparison at a time (:attr:`SetwiseSort.pending`) and takes the answer
(:meth:`SetwiseSort.answer`), so a reranker can gather the pending comparisons of many queries
into one engine call (:func:`sort_many`). The released ``compare()`` shuffles each set with the
process-wide ``random`` before showing it; here the shuffle comes from the sort's own
``random.Random(seed)`` (seed 0 by default), so runs are reproducible and independent of how
queries are batched, or it is turned off.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Literal

from thinkrank.errors import InvalidInputError
from thinkrank.families.base import Fallback, Kind, ModelInput, SetAnswer, Source
from thinkrank.families.sampling import Sampling

NAME = "rank-r1"
KIND: Kind = "set"

COMMIT = "b36517bf17a3956dc56c4c967f972d02390b1cdd"
SOURCE = Source("ielab/llm-rankers", COMMIT, "llmrankers/setwise.py:RankR1SetwiseLlmRanker.compare")
SORT_SOURCE = Source("ielab/llm-rankers", COMMIT, "llmrankers/setwise.py:SetwiseLlmRanker.rerank")
"""Where the sorts come from (``heapSort``/``heapify`` and the bubblesort inside ``rerank``)."""

MODELS: dict[str, str] = {
    "ielabgroup/Rank-R1-3B-v0.1": "Qwen/Qwen2.5-3B-Instruct",
    "ielabgroup/Rank-R1-7B-v0.1": "Qwen/Qwen2.5-7B-Instruct",
    "ielabgroup/Rank-R1-14B-v0.1": "Qwen/Qwen2.5-14B-Instruct",
}
"""The released checkpoints (LoRA adapters) and the base model each applies to (``Rank-R1/README.md``)."""

DEFAULT_MODEL = "ielabgroup/Rank-R1-7B-v0.1"

Method = Literal["heapsort", "bubblesort"]
METHODS: tuple[Method, ...] = ("heapsort", "bubblesort")
NUM_CHILD = 19
"""Children per heap node (``--num_child 19``): sets of up to 20 documents."""
MAX_SET = 20
"""Labels ``[1]``…``[20]``: the most documents one comparison can show."""
TOP_K = 10
METHOD: Method = "heapsort"
PASSAGE_TOKENS = 512
QUERY_TOKENS = 32
"""Released cuts on TREC DL (``--passage_length 512 --query_length 32``; BRIGHT: 1024 and 1024)."""

SAMPLING = Sampling(max_tokens=2048, temperature=0.0)
"""``RankR1SetwiseLlmRanker.__init__``: greedy, 2048 new tokens (the v0.1 GRPO completion length)."""

SYSTEM_PROMPT = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. The "
    "assistant first thinks about the reasoning process in the mind and then provides the user with the answer. "
    "The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> tags, "
    "respectively, i.e., <think> reasoning process here </think> <answer> answer here </answer>."
)
USER_PROMPT = (
    'Given the query: "{query}", which of the following documents is most relevant?\n'
    "{docs}\n"
    "After completing the reasoning process, please provide only the label of the most relevant document to the "
    "query, enclosed in square brackets, within the answer tags. For example, if the third document is the most "
    "relevant, the answer should be: <think> reasoning process here </think> <answer>[3]</answer>."
)
"""``Rank-R1/prompts/prompt_setwise-R1.toml``: ``prompt_system`` and ``prompt_user``."""

_ANSWER = re.compile(r"<think>.*?</think>\s*<answer>(.*?)</answer>", re.DOTALL)
_FIELD = re.compile(r"\{(query|docs)\}")


def format_documents(documents: Sequence[str]) -> str:
    """``[1] first\\n[2] second…``: the documents as the v0.1 training data and the package write them."""
    return "\n".join(f"[{i}] {text}" for i, text in enumerate(documents, 1))


def build_input(query: str, documents: Sequence[str], *, instruction: str | None = None) -> ModelInput:
    """The chat for one comparison: ``documents`` in the order shown (``[1]`` first), already
    cut to length (the released cut: :func:`~thinkrank.families.truncation.token_truncation`).

    ``instruction`` (not in the released code) is appended to the query after a space, as
    thinkrank does for Rank-K. Fields are filled in one pass, so braces in a query or document
    stay literal, as ``str.format`` leaves them.

    Raises:
        InvalidInputError: an empty query, no documents or more than 20, or a non-string document.
    """
    if not isinstance(query, str) or not query.strip():
        raise InvalidInputError("the query must be a non-empty string")
    if not documents or len(documents) > MAX_SET:
        raise InvalidInputError(f"a Rank-R1 comparison shows 1 to {MAX_SET} documents, got {len(documents)}")
    for i, doc in enumerate(documents):
        if not isinstance(doc, str):
            raise InvalidInputError(f"document {i} must be a string, got {type(doc).__name__}")
    if instruction is not None and not isinstance(instruction, str):
        raise InvalidInputError(f"the instruction must be a string or None, got {type(instruction).__name__}")
    if instruction and instruction.strip():
        query = f"{query} {instruction.strip()}"
    values = {"query": query, "docs": format_documents(documents)}
    user = _FIELD.sub(lambda m: values[m.group(1)], USER_PROMPT)
    return ModelInput(messages=({"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}))


def parse_set(text: str, m: int) -> SetAnswer:
    """The chosen position (0-based, in the order shown) read from ``text`` for a set of ``m``.

    Never raises on model output: an output without ``<think>…</think><answer>…</answer>`` or
    with an answer other than a label ``[1]``…``[m]`` gives ``chosen=None`` and a fallback
    (the sort keeps the parent, as released).

    Raises:
        InvalidInputError: ``m`` not in 1..20.
    """
    if not isinstance(m, int) or isinstance(m, bool) or not 1 <= m <= MAX_SET:
        raise InvalidInputError(f"m (the documents in the set) must be an int from 1 to {MAX_SET}, got {m!r}")
    text = text if isinstance(text, str) else ""
    match = _ANSWER.search(text.lower())
    if not match:
        return SetAnswer(None, Fallback(
            "unexpected", "no <think>…</think><answer>…</answer> in the output; the parent is kept, as released"))
    answer = match.group(1).strip()
    labels = [f"[{i}]" for i in range(1, m + 1)]
    if answer not in labels:
        return SetAnswer(None, Fallback(
            "unexpected", f"answer {answer[:40]!r} is not a label [1]..[{m}]; the parent is kept, as released"))
    return SetAnswer(labels.index(answer))


# ---- the sorts ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Comparison:
    """One comparison a sort needs: ``docs`` are candidate indices (into the query's list) in
    the sort's order, ``docs[0]`` the parent (the one kept when the answer is unexpected);
    ``shown`` the same indices in the order the model sees them (``[1]`` is ``shown[0]``)."""

    docs: tuple[int, ...]
    shown: tuple[int, ...]


_Steps = Generator[tuple[int, ...], "int | None", None]


class SetwiseSort:
    """The released setwise sort of ``n`` candidates (indices ``0..n-1``, first-stage order),
    one comparison at a time.

    Loop: while not :attr:`done`, read :attr:`pending`, have the model compare it, and call
    :meth:`answer` with the chosen candidate index (``pending.shown[k - 1]`` for an answer
    ``[k]``) or None when the answer was unexpected. :meth:`ranking` then gives the order: the
    top ``k`` as sorted, then the others in first-stage order (``SetwiseLlmRanker.rerank``).

    ``method``: ``"heapsort"`` (released default) or ``"bubblesort"``; ``k``: how many to bring
    to the top; ``num_child``: 1..19, sets of ``num_child + 1``. ``shuffle``: show each set in
    an order drawn from ``random.Random(seed)`` (the released code shuffles every set, unseeded);
    False shows ``docs`` as they are. Sets of one document (the bubblesort's tail windows) are
    not asked: every answer keeps them, as released, so they cost no call.

    Raises:
        InvalidInputError: bad settings, or an answer that is not one of the pending documents.
    """

    def __init__(
        self,
        n: int,
        *,
        method: Method = METHOD,
        k: int = TOP_K,
        num_child: int = NUM_CHILD,
        shuffle: bool = True,
        seed: int = 0,
    ) -> None:
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise InvalidInputError(f"n (the candidates) must be an int >= 0, got {n!r}")
        if method not in METHODS:
            raise InvalidInputError(f"unknown setwise method {method!r}: use one of {', '.join(METHODS)}")
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise InvalidInputError(f"k (the documents brought to the top) must be an int >= 1, got {k!r}")
        if not isinstance(num_child, int) or isinstance(num_child, bool) or not 1 <= num_child < MAX_SET:
            raise InvalidInputError(f"num_child must be an int from 1 to {MAX_SET - 1} (sets of up to {MAX_SET}), "
                                    f"got {num_child!r}")
        self.n, self.k = n, k
        self._order = list(range(n))
        self._rng = random.Random(seed) if shuffle else None
        steps = _heapsort if method == "heapsort" else _bubblesort
        self._steps: _Steps = steps(self._order, k, num_child)
        self._pending: Comparison | None = None
        self.comparisons = 0
        self._advance(None, first=True)

    @property
    def done(self) -> bool:
        return self._pending is None

    @property
    def pending(self) -> Comparison | None:
        """The comparison to make next (None once the sort is done)."""
        return self._pending

    def answer(self, chosen: int | None) -> None:
        """Give the pending comparison's answer: the chosen candidate index, or None (unexpected:
        the parent is kept)."""
        if self._pending is None:
            raise InvalidInputError("the sort is done: there is no pending comparison to answer")
        if chosen is not None and chosen not in self._pending.docs:
            raise InvalidInputError(f"answer {chosen!r} is not one of the compared candidates {self._pending.docs}")
        self._advance(None if chosen is None else self._pending.docs.index(chosen))

    def ranking(self) -> list[int]:
        """Candidate indices best first: the sorted top ``k``, then the rest in first-stage order."""
        if self._pending is not None:
            raise InvalidInputError("the sort is not done: answer its pending comparisons first")
        top = self._order[: self.k]
        placed = set(top)
        return top + [i for i in range(self.n) if i not in placed]

    def _advance(self, position: int | None, first: bool = False) -> None:
        try:
            docs = next(self._steps) if first else self._steps.send(position)
            while len(docs) < 2:  # a lone document wins whatever the answer: no call
                docs = self._steps.send(None)
        except StopIteration:
            self._pending = None
            return
        shown = tuple(self._rng.sample(docs, len(docs))) if self._rng else docs
        self._pending = Comparison(docs, shown)
        self.comparisons += 1


def _heapsort(order: list[int], k: int, num_child: int) -> _Steps:
    """``SetwiseLlmRanker.heapSort``/``heapify``: a max-heap with ``num_child`` children per node;
    after ``k`` extractions the best are at the end of ``order``, which ends reversed."""
    n = len(order)

    def sift(size: int, i: int) -> _Steps:
        while num_child * i + 1 < size:
            family = [i, *range(num_child * i + 1, min(num_child * (i + 1) + 1, size))]
            best = yield tuple(order[j] for j in family)
            largest = family[best] if best is not None else i
            if largest == i:
                return
            order[i], order[largest] = order[largest], order[i]
            i = largest

    for i in range(n // num_child, -1, -1):
        yield from sift(n, i)
    for ranked, last in enumerate(range(n - 1, 0, -1), 1):
        order[last], order[0] = order[0], order[last]
        if ranked == k:
            break
        yield from sift(last, 0)
    order.reverse()


def _bubblesort(order: list[int], k: int, num_child: int) -> _Steps:
    """The bubblesort of ``SetwiseLlmRanker.rerank``: windows of ``num_child + 1`` slide from the
    bottom to position ``i``, swapping each window's winner to its front; it remembers where
    the first change of a pass happened to start the next pass there (the released shortcut)."""
    n = len(order)
    size = num_child + 1
    last_start = n - size
    for i in range(k):
        start, end = last_start, last_start + size
        changed = False
        while True:
            start = max(start, i)
            window = order[start:end]  # Python slicing as released, negative ends included
            best = yield tuple(window)
            best = 0 if best is None else best
            if best != 0:
                order[start], order[start + best] = order[start + best], order[start]
                if not changed:
                    changed = True
                    if last_start != n - size and best == len(window) - 1:
                        last_start += len(window) - 1
            if start == i:
                break
            if not changed:
                last_start -= num_child
            start -= num_child
            end -= num_child


def comparison_input(
    query: str, documents: Sequence[str], comparison: Comparison, *, instruction: str | None = None
) -> ModelInput:
    """The chat for ``comparison`` of a query's ``documents`` (all candidates, first-stage order,
    already cut): its ``shown`` documents labelled ``[1]…`` in that order."""
    return build_input(query, [documents[i] for i in comparison.shown], instruction=instruction)


def chosen_candidate(comparison: Comparison, answer: SetAnswer) -> int | None:
    """The candidate index an answer picks (``comparison.shown[chosen]``), None when unexpected:
    what :meth:`SetwiseSort.answer` takes.

    Raises:
        InvalidInputError: an answer read for a set of another size.
    """
    if answer.chosen is None:
        return None
    if not 0 <= answer.chosen < len(comparison.shown):
        raise InvalidInputError(f"answer position {answer.chosen} is outside the set of {len(comparison.shown)}")
    return comparison.shown[answer.chosen]


def sort_many(
    sorts: Sequence[SetwiseSort],
    compare: Callable[[list[tuple[int, Comparison]]], Sequence[int | None]],
) -> None:
    """Run ``sorts`` (one per query) to the end, each round sending every pending comparison to
    ``compare`` at once: it gets ``(sort index, comparison)`` pairs and returns, in the same
    order, each chosen candidate index or None (e.g. one engine call per round).

    Raises:
        InvalidInputError: ``compare`` returned the wrong number of answers (or a bad answer).
    """
    while True:
        batch = [(i, s.pending) for i, s in enumerate(sorts) if s.pending is not None]
        if not batch:
            return
        answers = compare(batch)  # type: ignore[arg-type]
        if len(answers) != len(batch):
            raise InvalidInputError(f"compare answered {len(answers)} comparisons, {len(batch)} were asked")
        for (i, _), chosen in zip(batch, answers):
            sorts[i].answer(chosen)


def rank(
    n: int,
    compare: Callable[[Comparison], int | None],
    **options: object,
) -> list[int]:
    """One query's setwise ranking of ``n`` candidates with ``compare(comparison) -> chosen
    candidate index or None``; ``options`` as :class:`SetwiseSort`."""
    sort = SetwiseSort(n, **options)  # type: ignore[arg-type]
    while sort.pending is not None:
        sort.answer(compare(sort.pending))
    return sort.ranking()
