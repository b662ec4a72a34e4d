"""Rank1: a pointwise reasoning reranker (one chain per query–document pair).

For each pair the model continues the Rank1 prompt (ending in ``<think>``) until ``</think>``;
the score is p(" true") / (p(" true") + p(" false")) from the exact log-probabilities of those
two tokens right after ``</think>``. A chain that does not close by itself (the budget ran out,
or the model ended it with end-of-sequence) gets the released code's forced answer
(:func:`~thinkrank.prompts.rank1.forced_close`): cut after its last ``.``/``!``/``?``, scored
after ``prompt + "\\n" + chain + "\\n</think>"`` (``forced``). With ``reasoning=False`` the
prompt is closed at once with ``reasoning_close`` (default ``"\\n</think>"``): one forward pass.

Prompts are fitted to the engine's context: the passage is cut so that prompt, budget and the
forced answer fit (``truncated``); a query and template that alone do not fit are an error.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from thinkrank.engines import Engine, GenerationRequest, load_engine, single_token_id
from thinkrank.engines.loading import DEFAULT_MODEL
from thinkrank.errors import InvalidInputError
from thinkrank.prompts.rank1 import (
    THINK_CLOSE,
    Rank1Prompt,
    cut_forced_chain,
    forced_close,
    resolve_reasoning_close,
    resolve_template,
)
from thinkrank.rerankers.base import RequestLike, Reranker, as_request
from thinkrank.rerankers.truncation import truncate_passage

# Tokens kept free beyond prompt and budget: the forced answer's "\n", "\n</think>" and the
# answer token, plus slack for tokens merging differently at the passage's edges.
_CONTEXT_RESERVE = 8
from thinkrank.types import Document, Judgment, Ranking, as_documents, check_query


@dataclass(frozen=True)
class Pair:
    """One (query, document) pair to judge; ``index`` is the document's input position."""

    query: str
    document: Document
    index: int = 0
    instruction: str | None = None


@dataclass
class _Work:
    pair: Pair
    prompt: str
    truncated: bool


class Rank1(Reranker):
    """Pointwise reasoning reranker (Rank1).

    Args:
        model: hub id (default: the released ``jhu-clsp/rank1-7b``), local directory, ``.gguf``
            file or adapter directory; ignored when ``engine`` is an engine instance.
        engine: ``"auto"``, ``"transformers"``, ``"vllm"``, ``"openai"`` or an Engine.
        think_budget: most reasoning tokens per pair before the answer is forced.
        reasoning: False closes the think block at once (one forward pass per pair).
        prompt: a dataset name from the released ``prompts.py`` (``"scifact"``, …) or a custom template
            with ``FILL_QUERY_HERE``; ``instruction``: text appended to every query.
        max_passage_tokens: passages are cut to this many tokens (None: never); cut ones are
            flagged ``truncated``.
        temperature / seed: greedy by default; sampling is reproducible with a seed.
        true_token / false_token: the answer words (single tokens, with their leading space).
        reasoning_close: with reasoning off, the bytes that close the empty think block:
            ``"newline"`` (``"\\n</think>"``, default), ``"bare"`` (``"</think>"``),
            ``"empty-chain"`` (``"\\n\\n</think>"``) or the literal text. The released code has no
            reasoning-off mode, and the choice changes scores.
        engine_options: passed to the engine's constructor.
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        engine: str | Engine = "auto",
        *,
        think_budget: int = 1024,
        reasoning: bool = True,
        prompt: str | None = None,
        instruction: str | None = None,
        max_passage_tokens: int | None = 2048,
        temperature: float = 0.0,
        seed: int | None = None,
        true_token: str = " true",
        false_token: str = " false",
        reasoning_close: str = "newline",
        progress: Callable[[int, int], None] | None = None,
        **engine_options: Any,
    ) -> None:
        if think_budget < 1 and reasoning:
            raise InvalidInputError(f"think_budget must be >= 1 token, got {think_budget}")
        if max_passage_tokens is not None and max_passage_tokens < 1:
            raise InvalidInputError(f"max_passage_tokens must be >= 1 or None, got {max_passage_tokens}")
        if temperature < 0:
            raise InvalidInputError(f"temperature must be >= 0, got {temperature}")
        resolve_template(prompt)  # fail early on an unknown dataset name
        self.reasoning_close = resolve_reasoning_close(reasoning_close)
        self.engine = load_engine(model, engine, **engine_options)
        self.think_budget = think_budget
        self.reasoning = reasoning
        self.prompt = prompt
        self.instruction = instruction
        self.max_passage_tokens = max_passage_tokens
        self.temperature = temperature
        self.seed = seed
        self.progress = progress
        tok = self.engine.tokenizer
        self.true_id = single_token_id(tok, true_token)
        self.false_id = single_token_id(tok, false_token)

    @property
    def settings(self) -> dict[str, Any]:
        """Everything that changes a judgment besides query and document (for caches and logs)."""
        return {
            "mode": "pointwise",
            "model": self.engine.model_name,
            "engine": self.engine.name,
            "think_budget": self.think_budget if self.reasoning else 0,
            "reasoning": self.reasoning,
            **({} if self.reasoning else {"reasoning_close": self.reasoning_close}),
            "forced_answer": "reference",
            "prompt": resolve_template(self.prompt),
            "instruction": self.instruction,
            "max_passage_tokens": self.max_passage_tokens,
            "temperature": self.temperature,
            "seed": self.seed if self.temperature > 0 else None,
            "answer_ids": [self.true_id, self.false_id],
        }

    # ---- public API -----------------------------------------------------------------------
    def rerank_many(self, requests: Sequence[RequestLike], top_n: int | None = None) -> list[Ranking]:
        reqs = [as_request(r, i) for i, r in enumerate(requests)]
        per_query: list[list[Pair]] = []
        for req in reqs:
            query = check_query(req.query)
            docs = as_documents(req.documents)
            per_query.append([Pair(query, d, i, req.instruction) for i, d in enumerate(docs)])
        judgments = iter(self.judge([p for pairs in per_query for p in pairs]))
        return [
            Ranking(req.query, [next(judgments) for _ in pairs], req.query_id).truncate(top_n)
            for req, pairs in zip(reqs, per_query)
        ]

    def judge(self, pairs: Sequence[Pair]) -> list[Judgment]:
        """Judge each pair (in one batched pass over the engine); judgments in input order."""
        work = [self._prepare(p) for p in pairs]
        if not work:
            return []
        tracker = _Tracker(self.progress, len(work))
        if not self.reasoning:
            closed = [w.prompt + self.reasoning_close for w in work]
            answers = self.engine.next_token_logprobs(closed, [self.true_id, self.false_id], tracker)
            counts = [len(self.engine.tokenizer.encode(w.prompt)) for w in work]
            return [self._judgment(w, lp, "", n, 0, False) for w, lp, n in zip(work, answers, counts)]
        gens = self.engine.generate([self._request(w, i) for i, w in enumerate(work)], tracker)
        # Chains that did not close (or whose close was not scored in the same pass) are
        # scored together in one restricted next-token pass. Only a matched </think> closes a
        # chain; end-of-sequence and the budget both get the reference's forced answer.
        pending: dict[int, tuple[str, bool, str]] = {}
        for i, (w, g) in enumerate(zip(work, gens)):
            if g.answer_logprobs is None or not g.stopped:
                if g.stopped:
                    pending[i] = (g.text, False, w.prompt + g.text + THINK_CLOSE)
                else:
                    pending[i] = (cut_forced_chain(g.text), True, w.prompt + forced_close(g.text))
        contexts = [context for _, _, context in pending.values()]
        late = dict(zip(pending, self.engine.next_token_logprobs(contexts, [self.true_id, self.false_id])))
        out = []
        for i, (w, g) in enumerate(zip(work, gens)):
            chain, forced, _ = pending.get(i, (g.text, False, ""))
            out.append(self._judgment(w, late.get(i, g.answer_logprobs), chain, g.prompt_tokens, g.num_tokens, forced))
        return out

    # ---- internals ------------------------------------------------------------------------
    def _prepare(self, pair: Pair) -> _Work:
        instruction = " ".join(x for x in (pair.instruction, self.instruction) if x) or None
        template = Rank1Prompt.create(pair.query, self.prompt, instruction)
        limit = self._passage_limit(template)
        passage, truncated = truncate_passage(self.engine.tokenizer, pair.document.passage, limit)
        return _Work(pair, template.render(passage), truncated)

    def _passage_limit(self, template: Rank1Prompt) -> int | None:
        """The most passage tokens that fit: ``max_passage_tokens``, lowered so that prompt,
        budget and forced answer fit the engine's context.

        Raises:
            InvalidInputError: the query and template alone leave no room for a passage.
        """
        context = getattr(self.engine, "context_length", None)
        if context is None:
            return self.max_passage_tokens
        tok = self.engine.tokenizer
        frame = len(tok.encode(template.head)) + len(tok.encode(template.tail)) + 1  # +1: a BOS token
        budget = self.think_budget if self.reasoning else 0
        room = context - frame - budget - _CONTEXT_RESERVE
        if room < 1:
            raise InvalidInputError(
                f"the query and template take {frame} tokens; with think_budget {budget} and {_CONTEXT_RESERVE} tokens "
                f"for the answer they leave no room for a passage in the model's context of {context} tokens: "
                "shorten the query or template, or lower think_budget"
            )
        return room if self.max_passage_tokens is None else min(room, self.max_passage_tokens)

    def _request(self, work: _Work, position: int) -> GenerationRequest:
        seed = None if self.seed is None else self.seed + position
        return GenerationRequest(
            prompt=work.prompt,
            max_tokens=self.think_budget,
            stop=(THINK_CLOSE,),
            temperature=self.temperature,
            seed=seed,
            answer_token_ids=(self.true_id, self.false_id),
        )

    def _judgment(
        self, work: _Work, logprobs: dict[int, float] | None, chain: str, prompt_tokens: int, chain_tokens: int,
        forced: bool,
    ) -> Judgment:
        if logprobs is None:  # an engine broke its contract; never invent a score
            raise RuntimeError(f"engine {self.engine.name} returned no answer log-probabilities")
        lt, lf = logprobs[self.true_id], logprobs[self.false_id]
        score = _sigmoid(lt - lf)  # = p_t / (p_t + p_f), without under/overflow
        return Judgment(
            doc_id=work.pair.document.id,
            index=work.pair.index,
            score=score,
            reasoning=chain,
            answer="true" if lt >= lf else "false",
            prompt_tokens=prompt_tokens,
            reasoning_tokens=chain_tokens,
            forced=forced,
            truncated=work.truncated,
            p_true=math.exp(lt),
            p_false=math.exp(lf),
        )


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


class _Tracker:
    """Adapts the engine's per-batch progress calls to ``progress(done, total)``."""

    def __init__(self, callback: Callable[[int, int], None] | None, total: int) -> None:
        self.callback, self.total, self.done = callback, total, 0

    def __call__(self, n: int) -> None:
        self.done += n
        if self.callback:
            self.callback(self.done, self.total)
