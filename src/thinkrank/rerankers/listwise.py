"""Rank-K and the other query families: a listwise reasoning reranker (sliding windows of
passages, one chain per window).

Each window's passages go to the model in the released Rank-K prompt (one user message,
through the model's chat template); the model reasons, then writes an ordering such as
``[3] > [2] > [4] = [1] > [5]``, read by :mod:`thinkrank.rerankers.parsing`. Windows slide
from the bottom of the top ``depth`` candidates up, so the best passages bubble to the top.
Windows of one query run one after another (each sees the previous one's result); the windows
of different queries at the same step go to the engine as one batch.

``family`` picks another released query family (ReasonRank): what differs (window plan, passage
cut, chat, reader, sampling) is its :class:`~thinkrank.families.window.WindowFamily` adapter.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from thinkrank.engines import Engine, Generation, GenerationRequest, load_engine
from thinkrank.errors import InvalidInputError
from thinkrank.families.base import Kind
from thinkrank.families.window import WindowFamily, window_family
from thinkrank.prompts.rankk import DEPTH, PASSAGE_TOKENS, STRIDE, WINDOW, check_template
from thinkrank.rerankers.base import ProgressTracker, RequestLike, Reranker, RerankRequest, as_request
from thinkrank.rerankers.parsing import THINK_OPEN
from thinkrank.rerankers.truncation import widest_prompt
from thinkrank.types import Document, Judgment, Ranking, WindowTrace, as_documents, check_instruction, check_query
from thinkrank.validation import check_optional_str, check_sampling, check_top_n

log = logging.getLogger(__name__)

DEFAULT_MODEL = "hltcoe/Rank-K-32B"
"""The released Rank-K checkpoint (QwQ-32B fine-tuned on R1 listwise traces)."""


def plan_windows(n: int, window: int = WINDOW, stride: int = STRIDE, depth: int | None = DEPTH) -> list[tuple[int, int]]:
    """The ``[start, end)`` spans, in the order they run, for ``n`` candidates.

    As the reference: ends step down by ``stride``, ``start = end - window``, and the pass
    stops once a window reaches the top; depth 100, window 20, stride 10 gives its 9 windows
    ``[80, 100)`` … ``[0, 20)``. Two differences keep every window full and none empty: ends
    start at ``min(depth, n)`` (the reference starts at ``depth``, so with fewer candidates its
    first windows are short or empty), and the top window is ``[0, window)`` (the reference's
    would be short, or with Python's negative slicing empty, leaving the top unranked).
    Fewer than 2 candidates need no window.
    """
    top = n if depth is None else min(depth, n)
    if top < 2:
        return []
    spans = []
    for end in range(top, 0, -stride):
        if end - window <= 0:
            spans.append((0, min(window, top)))
            break
        spans.append((end - window, end))
    return spans


@dataclass
class _Pass:
    """One query's sliding pass: the current order (input indices) and which positions tie."""

    request: RerankRequest
    query: str
    docs: list[Document]
    passages: dict[int, tuple[str, bool]]  # input index -> (passage as shown, truncated)
    spans: list[tuple[int, int]]
    seed_base: int
    order: list[int] = field(default_factory=list)
    tied: list[bool] = field(default_factory=list)  # tied[p]: position p ties with p - 1
    traces: list[WindowTrace] = field(default_factory=list)
    chain_tokens: list[int] = field(default_factory=list)
    placed_by: dict[int, int] = field(default_factory=dict)  # input index -> trace position


class RankK(Reranker):
    """Listwise reasoning reranker (Rank-K, and every query family: ``family="reasonrank"``).

    Args:
        model: hub id (default: the released ``hltcoe/Rank-K-32B``), local directory or
            ``.gguf`` file of a chat model; ignored when ``engine`` is an engine instance.
        engine: ``"auto"``, ``"transformers"``, ``"vllm"``, ``"openai"`` or an Engine.
        family: the released query family: ``"rank-k"`` (default) or ``"reasonrank"`` (its
            prompt mode chosen by the model, its window plan, passage cut, reader and budget;
            windows its reader could only read by a released fallback say so in their trace).
        window / stride / depth: passages per call, the step between windows, and how many of
            the top candidates are reranked (None: all). Documents below ``depth`` keep their
            order after the reranked head.
        max_tokens: budget per window for reasoning and ordering together (None: the family's,
            4096 for Rank-K). A window whose budget runs out before an ordering keeps its order
            (its trace is ``forced``).
        max_passage_tokens: each passage is cut to this many tokens (None: never), so the
            passage numbers and the instructions always survive; cut ones are ``truncated``.
        prompt: a custom template with ``{query}`` and ``{docs}`` (default: the released one);
            ``instruction``: text appended to every query.
        temperature / seed: the family's (None; greedy for Rank-K); with sampling, window ``k`` of a call (counted
            over all its queries) uses seed ``seed + k``, so runs are reproducible.
        progress: ``progress(done, total)`` over the windows of a call.
        calibration: a calibration file (``thinkrank calibrate``) fitted for these settings:
            every judgment then carries ``probability``, a function of its final rank.
        engine_options: passed to the engine's constructor.
    """

    kind: ClassVar[Kind] = "query"

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        engine: str | Engine = "auto",
        *,
        family: str = "rank-k",
        window: int = WINDOW,
        stride: int = STRIDE,
        depth: int | None = DEPTH,
        max_tokens: int | None = None,
        max_passage_tokens: int | None = PASSAGE_TOKENS,
        prompt: str | None = None,
        instruction: str | None = None,
        temperature: float | None = None,
        seed: int | None = None,
        progress: Callable[[int, int], None] | None = None,
        calibration: Any = None,
        **engine_options: Any,
    ) -> None:
        check_settings(window, stride, depth, 1 if max_tokens is None else max_tokens, max_passage_tokens,
                       0.0 if temperature is None else temperature)
        check_sampling(0.0 if temperature is None else temperature, seed)
        check_optional_str("prompt", prompt)
        check_optional_str("instruction", instruction)
        check_template(prompt)
        window_family(family, model if isinstance(model, str) else "", prompt)  # its checks, before a model loads
        self.engine = load_engine(model, engine, **engine_options)
        self.family = family
        self.window_family: WindowFamily = window_family(family, self.engine.model_name, prompt)
        released = self.window_family.sampling(self.engine.model_name)
        max_tokens = released.max_tokens if max_tokens is None else max_tokens
        temperature = released.temperature if temperature is None else temperature
        self.window, self.stride, self.depth = window, stride, depth
        self.max_tokens = max_tokens
        self.max_passage_tokens = max_passage_tokens
        self.prompt = prompt
        self.instruction = instruction
        self.temperature = temperature
        # The family's released filters (reasonrank-8B: top-p 0.95, top-k 20, min-p 0) go with
        # its sampling; greedy has none.
        self.top_p, self.top_k, self.min_p = (released.top_p, released.top_k, released.min_p) if temperature > 0 else (None, None, None)
        self.seed = seed
        self.progress = progress
        from thinkrank.calibration.file import calibration_for

        self.calibration = calibration_for(calibration, self.settings)

    @property
    def settings(self) -> dict[str, Any]:
        """Everything that changes a ranking besides query and documents (for caches and logs)."""
        return {
            "mode": "listwise",
            "model": self.engine.model_name,
            "engine": self.engine.name,
            "window": self.window,
            "stride": self.stride,
            "depth": self.depth,
            "max_tokens": self.max_tokens,
            "max_passage_tokens": self.max_passage_tokens,
            "prompt": check_template(self.prompt),
            "instruction": self.instruction,
            "temperature": self.temperature,
            "seed": self.seed if self.temperature > 0 else None,
            "scores": "reciprocal-rank-distinct",  # 1/(rank+1) for every position, ties in written order
        } | self._filters() | self.window_family.settings()  # nothing for rank-k: its settings and cache keys stay as they were

    # ---- public API -----------------------------------------------------------------------
    def rerank_many(self, requests: Sequence[RequestLike], top_n: int | None = None) -> list[Ranking]:
        """Rerank many queries; step ``k`` of every query runs in one engine batch.

        Each Judgment's ``reasoning`` (and token counts, ``forced``) come from the last window
        that placed the document; ``Ranking.windows`` holds every window's trace. Scores are
        ``1 / (p + 1)`` for final position ``p`` (from 0), as the released code writes its run
        files: tied documents keep the order the model wrote them in and get distinct scores;
        their tie shows in ``Judgment.tie_group`` and in the window's ``order``. A window whose
        output holds no usable ordering keeps its order, is flagged ``parsed=False`` and logged.

        Raises:
            InvalidInputError: an empty query, a bad document, duplicate document ids or a bad top_n.
        """
        check_top_n(top_n)  # before any window runs, not after
        passes: list[_Pass] = []
        for i, item in enumerate(requests):
            passes.append(self._start(as_request(item, i), sum(len(p.spans) for p in passes)))
        tracker = ProgressTracker(self.progress, sum(len(p.spans) for p in passes))
        for step in range(max((len(p.spans) for p in passes), default=0)):
            active = [p for p in passes if step < len(p.spans)]
            batch = [self._request(p, step) for p in active]
            gens = self.engine.generate(batch, tracker)
            for p, request, gen in zip(active, batch, gens):
                self._apply(p, step, gen, self._cut_inside_think(request, gen))
        rankings = [self._ranking(p) for p in passes]
        if self.calibration is not None:
            self.calibration.apply(rankings)
        return [r.truncate(top_n) for r in rankings]

    def check(self, request: RequestLike) -> None:
        self._start(as_request(request, 0), 0)

    # ---- internals ------------------------------------------------------------------------
    def _start(self, req: RerankRequest, seed_base: int) -> _Pass:
        query = check_query(req.query)
        docs = as_documents(req.documents)
        check_instruction(req.instruction)
        query = " ".join(x.strip() for x in (query, req.instruction, self.instruction) if x and x.strip())
        spans = self.window_family.plan(len(docs), self.window, self.stride, self.depth)
        shown = range(max((end for _, end in spans), default=0))  # only these are ever in a window
        tok = self.engine.tokenizer
        passages = {i: self.window_family.shown(tok, docs[i].passage, self.max_passage_tokens) for i in shown}
        if spans:
            self._check_context(query, [passages[i][0] for i in shown])
        return _Pass(req, query, docs, passages, spans, seed_base, list(range(len(docs))), [False] * len(docs))

    def _check_context(self, query: str, shown: list[str]) -> None:
        """Refuse, before any generation, a query whose largest possible window (the prompt
        around ``window`` of its longest passages) plus ``max_tokens`` exceeds the context.

        Raises:
            InvalidInputError: naming the sizes and what to lower.
        """
        context = getattr(self.engine, "context_length", None)
        if context is None:
            return
        frame = self.window_family.build(query, [""] * min(self.window, len(shown))).render(
            self.engine.apply_chat_template)
        prompt, n = widest_prompt(self.engine.tokenizer, frame, shown, self.window)
        need = prompt + n + self.max_tokens  # +1 a passage: tokens merging at its edges
        if need > context:
            raise InvalidInputError(
                f"a window of query {query[:60]!r} may need {need} tokens (prompt {prompt} with its "
                f"{n} longest passages, plus max_tokens {self.max_tokens}), more than the model's context of "
                f"{context}: lower max_passage_tokens, window or max_tokens"
            )

    def _request(self, p: _Pass, step: int) -> GenerationRequest:
        """Window ``step`` of ``p`` as the family's chat, for the engine's chat template or chat API."""
        start, end = p.spans[step]
        given = self.window_family.build(p.query, [p.passages[i][0] for i in p.order[start:end]])
        seed = None if self.seed is None else self.seed + p.seed_base + step
        return GenerationRequest(**given.request_fields(), max_tokens=self.max_tokens, temperature=self.temperature,
                                 seed=seed, top_p=self.top_p, top_k=self.top_k, min_p=self.min_p)

    def _filters(self) -> dict[str, float | int]:
        """The sampling filters in use, by name: only those set, so settings without them
        (every greedy family, Rank-K) stay as they were."""
        given = {"top_p": self.top_p, "top_k": self.top_k, "min_p": self.min_p}
        return {k: v for k, v in given.items() if v is not None}

    def _cut_inside_think(self, request: GenerationRequest, gen: Generation) -> bool:
        """Whether the budget ran out inside a chain the chat template opened (QwQ's prompt ends in
        ``<think>\\n``). Then the text, lacking ``</think>``, is an unfinished chain, not an answer.
        A model that ended its turn did close its chain: a server that strips chains (vLLM's
        reasoning parser in chat mode) returns just the answer, which is read as it is."""
        if gen.stop_reason != "length":
            return False
        messages = request.messages or ()
        return self.engine.apply_chat_template(list(messages)).rstrip().endswith(THINK_OPEN)

    def _apply(self, p: _Pass, step: int, gen: Generation, opened: bool) -> None:
        start, end = p.spans[step]
        indices = p.order[start:end]
        answer = self.window_family.read(gen.text, len(indices), opened)
        if answer.fallback is not None:
            log.warning(
                "%s window %d-%d of query %r: %s (%d tokens, stop: %s)", self.family, start, end,
                p.request.query_id or p.query[:60], answer.fallback.detail, gen.num_tokens, gen.stop_reason,
            )
        elif not answer.found:
            log.warning(
                "listwise window %d-%d of query %r: no ordering in the model's output (%d tokens, stop: %s); "
                "the window keeps its previous order", start, end, p.request.query_id or p.query[:60],
                gen.num_tokens, gen.stop_reason,
            )
        groups = [[indices[k - 1] for k in group] for group in answer.groups]
        p.order[start:end] = [i for group in groups for i in group]
        p.tied[start:end] = [k > 0 for group in groups for k in range(len(group))]
        if end < len(p.tied):
            p.tied[end] = False  # the window below was placed by another call: no tie across
        trace = WindowTrace(
            step=step, start=start, end=end, indices=indices, reasoning=answer.reasoning,
            ordering=answer.ordering, order=groups, prompt_tokens=gen.prompt_tokens,
            completion_tokens=gen.num_tokens, forced=gen.stop_reason == "length" and not answer.found,
            parsed=answer.found, fallback=answer.fallback,
        )
        p.traces.append(trace)
        p.chain_tokens.append(len(self.engine.tokenizer.encode(answer.reasoning)) if answer.reasoning else 0)
        p.placed_by.update((i, len(p.traces) - 1) for i in indices)

    def _ranking(self, p: _Pass) -> Ranking:
        judgments, group = [], -1
        for pos, index in enumerate(p.order):
            group += not p.tied[pos]
            judgment = Judgment(doc_id=p.docs[index].id, index=index, score=1.0 / (pos + 1), tie_group=group)
            if index in p.placed_by:
                t = p.placed_by[index]
                trace = p.traces[t]
                judgment.reasoning, judgment.forced = trace.reasoning, trace.forced
                judgment.prompt_tokens, judgment.reasoning_tokens = trace.prompt_tokens, p.chain_tokens[t]
            judgment.truncated = p.passages.get(index, ("", False))[1]
            judgments.append(judgment)
        return Ranking(p.request.query, judgments, p.request.query_id, windows=p.traces)


def ReasonRank(model: str = "liuwenhan/reasonrank-7B", engine: str | Engine = "auto", **options: Any) -> RankK:  # noqa: N802
    """The ReasonRank listwise reranker: :class:`RankK` with ``family="reasonrank"`` (its prompt
    mode from the model: ``liuwenhan/reasonrank-8B`` samples with the Qwen3 prompt, the 7B and
    32B are greedy; windows of 20, step 10, over the top 100; 3172 new tokens per window)."""
    return RankK(model, engine, family="reasonrank", **options)


def check_settings(
    window: int, stride: int, depth: int | None, max_tokens: int, max_passage_tokens: int | None, temperature: float
) -> None:
    """Rank-K's rules for its settings, checked before any model loads (raises InvalidInputError).
    The lower bounds are the ones the spec's fields declare."""
    from thinkrank.rerankers.spec import spec_options

    low = {name: int(spec_options()[name].declared.minimum or 0) for name in ("window", "stride", "depth", "max_tokens")}
    if not isinstance(window, int) or window < low["window"]:
        raise InvalidInputError(f"window must be an int >= {low['window']} (passages per call), got {window!r}")
    if not isinstance(stride, int) or not low["stride"] <= stride <= window:
        raise InvalidInputError(
            f"stride must be an int from {low['stride']} to window ({window}), got {stride!r}; a larger stride would "
            "skip passages between windows"
        )
    if depth is not None and (not isinstance(depth, int) or depth < low["depth"]):
        raise InvalidInputError(f"depth must be an int >= {low['depth']} or None (all candidates), got {depth!r}")
    if not isinstance(max_tokens, int) or max_tokens < low["max_tokens"]:
        raise InvalidInputError(f"max_tokens must be an int >= {low['max_tokens']}, got {max_tokens!r}")
    spec_options()["max_passage_tokens"].check(max_passage_tokens)
