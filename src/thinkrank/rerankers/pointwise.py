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

``family`` names the released pointwise format: ``"rank1"`` (the above), or another pair family
(``"qwen3-reranker"``, ``"tfrank"``: :mod:`thinkrank.families`) run through the same API by
:class:`~thinkrank.rerankers.pair_family.FamilyRunner`, with that family's prompt, generation
settings, answer readings and score.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from thinkrank.engines import Engine, Generation, GenerationRequest, load_engine, single_token_id
from thinkrank.engines.loading import DEFAULT_MODEL
from thinkrank.errors import InvalidInputError
from thinkrank.families.base import Kind
from thinkrank.families.pair import PairFamily
from thinkrank.prompts.rank1 import (
    FALSE_TOKEN,
    PASSAGE_TOKENS,
    REASONING,
    REASONING_CLOSE,
    THINK_BUDGET,
    THINK_CLOSE,
    TRUE_TOKEN,
    Rank1Prompt,
    cut_forced_chain,
    forced_close,
    resolve_reasoning_close,
    resolve_template,
)
from thinkrank.rerankers.base import ProgressTracker, RequestLike, Reranker, as_request
from thinkrank.rerankers.cascade import Cascade, combine
from thinkrank.rerankers.pair_family import FamilyRunner, Framed, pair_family
from thinkrank.rerankers.truncation import truncate_passage
from thinkrank.types import Document, Judgment, Ranking, as_documents, check_instruction, check_query
from thinkrank.validation import check_bool, check_int, check_optional_str, check_top_n

Judged = Callable[[list[int], list[Judgment]], None]
"""Called with the input positions of pairs just judged and their judgments."""

# Tokens kept free beyond prompt and budget: the forced answer's "\n", "\n</think>" and the
# answer token, plus slack for tokens merging differently at the passage's edges.
_CONTEXT_RESERVE = 8


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
    head: str = ""  # instruction + query: the same for every candidate of a query
    framed: Framed | None = None  # a family other than rank1: its model input


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
        cascade: reason only where it can change the top of each query's ranking (see
            :mod:`thinkrank.rerankers.cascade`): a :class:`Cascade`, ``top_m`` as an int, or a
            spec such as ``"top=20"`` / ``"band=0.2:0.8"``. Needs ``reasoning=True``, and the
            rank1 family (the only one with a cheap first pass: its reasoning-off score).
        family: the released pointwise format: ``"rank1"`` (default), ``"qwen3-reranker"`` or
            ``"tfrank"`` (see docs/families.md), or a :class:`~thinkrank.families.pair.PairFamily`
            of your own. Another family's defaults (model, instruction,
            generation budget, temperature) apply where ``model``, ``instruction``,
            ``think_budget`` (its generation budget) and ``temperature`` are not given; its
            reasoning is fixed, and ``prompt``, ``true_token``, ``false_token``,
            ``reasoning_close`` and ``cascade`` are Rank1's own. ``instruction`` replaces the
            family's default instruction (a request's instruction is joined to it with a space).
        calibration: a calibration file (``thinkrank calibrate``) or
            :class:`~thinkrank.calibration.Calibration` fitted for these settings: every judgment
            then carries ``probability`` beside ``score`` (settings and scores are unchanged).
        engine_options: passed to the engine's constructor.
    """

    kind: ClassVar[Kind] = "pair"

    @classmethod
    def judges_for(cls, *, cascade: Any = None, **options: Any) -> Kind:
        # A cascade chooses what to reason about from the query's other candidates.
        return "pair" if cascade is None else "query"

    @property
    def judges(self) -> Kind:
        return self.judges_for(cascade=self.cascade)

    def __init__(
        self,
        model: str | None = None,
        engine: str | Engine = "auto",
        *,
        think_budget: int | None = None,
        reasoning: bool | None = None,
        prompt: str | None = None,
        instruction: str | None = None,
        max_passage_tokens: int | None = PASSAGE_TOKENS,
        temperature: float | None = None,
        seed: int | None = None,
        true_token: str = TRUE_TOKEN,
        false_token: str = FALSE_TOKEN,
        reasoning_close: str = REASONING_CLOSE,
        progress: Callable[[int, int], None] | None = None,
        cascade: Cascade | int | str | None = None,
        calibration: Any = None,
        family: str | PairFamily = "rank1",
        **engine_options: Any,
    ) -> None:
        self._family = family if isinstance(family, PairFamily) else None if family == "rank1" else pair_family(family)
        if self._family is None:
            model = DEFAULT_MODEL if model is None else model
            think_budget = THINK_BUDGET if think_budget is None else think_budget
            reasoning = REASONING if reasoning is None else reasoning
        else:
            model, think_budget, reasoning = family_defaults(
                self._family, model, think_budget, reasoning, engine_given=not isinstance(engine, str), prompt=prompt, true_token=true_token,
                false_token=false_token, reasoning_close=reasoning_close, cascade=cascade)
            temperature = self._family.generation.temperature if temperature is None else temperature
        temperature = 0.0 if temperature is None else temperature
        check_settings(think_budget, reasoning, max_passage_tokens, temperature, prompt, seed, instruction)
        self.reasoning_close = resolve_reasoning_close(reasoning_close)
        self.cascade = check_cascade(cascade, reasoning)
        self.engine = load_engine(model, engine, **engine_options)
        self.think_budget = think_budget
        self.reasoning = reasoning
        self.prompt = prompt
        self.instruction = instruction
        self.max_passage_tokens = max_passage_tokens
        self.temperature = temperature
        self.seed = seed
        self.progress = progress
        self._runner = None if self._family is None else FamilyRunner(
            self._family, self.engine, max_tokens=think_budget, temperature=temperature, seed=seed)
        if self._runner is None:
            tok = self.engine.tokenizer
            self.true_id = single_token_id(tok, true_token)
            self.false_id = single_token_id(tok, false_token)
        from thinkrank.calibration.file import calibration_for

        self.calibration = calibration_for(calibration, self.settings)

    @property
    def settings(self) -> dict[str, Any]:
        """Everything that changes a judgment besides query and document (for caches and logs)."""
        if self._runner is not None:
            return self._family_settings(self._runner)
        return {
            "mode": "pointwise",
            "model": self.engine.model_name,
            "engine": self.engine.name,
            "think_budget": self.think_budget if self.reasoning else 0,
            "reasoning": self.reasoning,
            # Used by a no-reasoning pass: reasoning off, or the cascade's first stage.
            **({"reasoning_close": self.reasoning_close} if not self.reasoning or self.cascade else {}),
            "forced_answer": "reference",
            "prompt": resolve_template(self.prompt),
            "instruction": self.instruction,
            "max_passage_tokens": self.max_passage_tokens,
            "temperature": self.temperature,
            "seed": self.seed if self.temperature > 0 else None,
            "answer_ids": [self.true_id, self.false_id],
            **({"cascade": self.cascade.settings} if self.cascade else {}),
        }

    def _family_settings(self, runner: FamilyRunner) -> dict[str, Any]:
        source = runner.family.source
        return {
            "mode": "pointwise",
            "family": runner.family.name,
            "family_source": f"{source.repository}@{source.commit}",
            "model": self.engine.model_name,
            "engine": self.engine.name,
            "think_budget": runner.max_tokens,
            "reasoning": self.reasoning,
            "instruction": self.instruction,
            "max_passage_tokens": self.max_passage_tokens,
            "temperature": self.temperature,
            "seed": self.seed if self.temperature > 0 else None,
            "answer_ids": runner.answer_ids,
        }

    # ---- public API -----------------------------------------------------------------------
    def rerank_many(self, requests: Sequence[RequestLike], top_n: int | None = None) -> list[Ranking]:
        check_top_n(top_n)  # before any judging, not after
        reqs = [as_request(r, i) for i, r in enumerate(requests)]
        per_query: list[list[Pair]] = []
        for req in reqs:
            query = check_query(req.query)
            docs = as_documents(req.documents)
            per_query.append([Pair(query, d, i, req.instruction) for i, d in enumerate(docs)])
        if self.cascade is not None:
            judged = self._cascade(per_query)
            for js in judged:
                self._calibrate(js)
            return [Ranking(req.query, js, req.query_id).truncate(top_n) for req, js in zip(reqs, judged)]
        judgments = iter(self.judge([p for pairs in per_query for p in pairs]))
        return [
            Ranking(req.query, [next(judgments) for _ in pairs], req.query_id).truncate(top_n)
            for req, pairs in zip(reqs, per_query)
        ]

    def check(self, request: RequestLike) -> None:
        super().check(request)
        req = as_request(request, 0)
        # Passages are cut to fit; what can overflow the context is the query's part of the prompt.
        if self._runner is not None:
            self._passage_limit(*self._runner.frame(req.query, self._family_instruction(req.instruction)))
        else:
            template = self._template(req.query, req.instruction)
            self._passage_limit(template.head, template.tail)

    def judge(self, pairs: Sequence[Pair], *, on_judged: Judged | None = None,
              seed_offsets: Sequence[int] | None = None) -> list[Judgment]:
        """Judge each pair (in one batched pass over the engine); judgments in input order.
        Every pair is judged as configured (with reasoning unless it is off); the cascade
        works per query, in :meth:`rerank_many`.

        ``on_judged(positions, judgments)`` is called as soon as the engine finishes a batch
        (the transformers engine's ``batch_size`` pairs; see
        :data:`~thinkrank.engines.base.OnBatch` for the others), with the input positions of
        its pairs and their judgments, so they can be saved before the call returns.
        ``seed_offsets``: with sampling, pair i is sampled with ``seed + seed_offsets[i]``
        (default: its position ``i``), so a call over part of an earlier call's pairs (a
        resumed run) can sample each as that call did."""
        work = [self._prepare(p) for p in pairs]
        if not work:
            return []
        if seed_offsets is not None and len(seed_offsets) != len(work):
            raise InvalidInputError(f"seed_offsets has {len(seed_offsets)} entries for {len(work)} pairs")
        tracker = ProgressTracker(self.progress, len(work))
        return self._calibrate(self._judge(work, self.reasoning, tracker, seed_offsets, on_judged))

    def _calibrate(self, judgments: list[Judgment]) -> list[Judgment]:
        if self.calibration is not None:
            self.calibration.apply_judgments(judgments)
        return judgments

    def _cascade(self, per_query: list[list[Pair]]) -> list[list[Judgment]]:
        """Stage 1 for every pair, stage 2 (reasoning) for the selected ones, all queries batched."""
        assert self.cascade is not None
        work = [[self._prepare(p) for p in pairs] for pairs in per_query]
        flat = [w for ws in work for w in ws]
        tracker = ProgressTracker(self.progress, len(flat))
        quick = iter(self._judge(flat, False, tracker))
        quick_per_query = [[next(quick) for _ in ws] for ws in work]
        chosen = [self.cascade.select([j.score for j in js]) for js in quick_per_query]
        tracker.total += sum(len(c) for c in chosen)
        offsets = [sum(len(ws) for ws in work[:q]) for q in range(len(work))]
        picked = [(ws[i], offset + i) for ws, picks, offset in zip(work, chosen, offsets) for i in picks]
        # Each pair keeps its position in the full call, so sampling seeds match plain Rank1's.
        reasoned = iter(self._judge([w for w, _ in picked], True, tracker, [pos for _, pos in picked]))
        return [
            combine(js, {i: next(reasoned) for i in picks}) for js, picks in zip(quick_per_query, chosen)
        ]

    def _judge(
        self, work: list[_Work], reasoning: bool, tracker: ProgressTracker, positions: Sequence[int] | None = None,
        on_judged: Judged | None = None,
    ) -> list[Judgment]:
        if not work:
            return []
        out: list[Judgment | None] = [None] * len(work)
        runner = self._runner

        def finished(indices: list[int], results: list[Any]) -> None:
            """Turn an engine batch's results into judgments at once (and report them)."""
            if runner is not None:
                judged = [self._family_judgment(runner, work[i], r) for i, r in zip(indices, results)]
            else:
                judged = self._judgments([work[i] for i in indices], results, reasoning)
            for i, j in zip(indices, judged):
                out[i] = j
            if on_judged:
                on_judged(indices, judged)

        if runner is not None:
            framed = [w.framed for w in work]
            assert all(f is not None for f in framed)
            runner.judge(framed, tracker, positions if positions is not None else range(len(work)),  # type: ignore[arg-type]
                         finished)
        elif not reasoning:
            closed = [w.prompt + self.reasoning_close for w in work]
            # Every candidate of a query starts with its instruction and query: declared, so an
            # engine that can (transformers) prefills that prefix once per query.
            self.engine.next_token_logprobs(closed, [self.true_id, self.false_id], tracker, on_batch=finished,
                                            shared_prefixes=[w.head for w in work])
        else:
            positions = positions if positions is not None else range(len(work))
            requests = [self._request(w, pos) for w, pos in zip(work, positions)]
            self.engine.generate(requests, tracker, on_batch=finished)
        missing = [i for i, j in enumerate(out) if j is None]
        if missing:  # the protocol: every position is reported to on_batch
            raise RuntimeError(f"engine {self.engine.name} did not report {len(missing)} of {len(work)} results "
                               "to on_batch (see thinkrank.engines.base.OnBatch)")
        return out  # type: ignore[return-value]  # every position checked above

    def _judgments(self, work: list[_Work], results: list[Any], reasoning: bool) -> list[Judgment]:
        """Judgments from one batch of engine results: answer log-probs (reasoning off) or
        generations (reasoning on)."""
        if not reasoning:
            counts = [len(self.engine.tokenizer.encode(w.prompt)) for w in work]
            return [self._judgment(w, lp, "", n, 0, False, False) for w, lp, n in zip(work, results, counts)]
        gens: list[Generation] = results
        # Engines that do not honour ``close`` (vLLM, openai) leave the answer of chains that
        # did not close for one batched next-token pass over the closed text.
        pending = [i for i, g in enumerate(gens) if g.answer_logprobs is None]
        contexts = [work[i].prompt + close_chain(gens[i]) for i in pending]
        late = dict(zip(pending, self.engine.next_token_logprobs(
            contexts, [self.true_id, self.false_id], shared_prefixes=[work[i].head for i in pending]))) if pending else {}
        out = []
        for i, (w, g) in enumerate(zip(work, gens)):
            chain, forced = closed_chain(g)
            out.append(self._judgment(w, late.get(i, g.answer_logprobs), chain, g.prompt_tokens, g.num_tokens, forced,
                                      True, g.stop_reason))
        return out

    def _family_judgment(self, runner: FamilyRunner, work: _Work, result: Any) -> Judgment:
        counted = 0 if result[1] is not None else len(self.engine.tokenizer.encode(work.prompt))
        return runner.judgment(result, doc_id=work.pair.document.id, index=work.pair.index,
                               truncated=work.truncated, prompt_tokens=counted)

    # ---- internals ------------------------------------------------------------------------
    def _family_instruction(self, instruction: str | None) -> str | None:
        """The instruction a family's prompt gets: the request's and the reranker's, joined with
        a space; None (the family's default) when neither is given. An empty one stays empty."""
        check_instruction(instruction)
        given = [x for x in (instruction, self.instruction) if x is not None]
        return " ".join(given) if given else None

    def _template(self, query: str, instruction: str | None) -> Rank1Prompt:
        check_instruction(instruction)
        joined = " ".join(x for x in (instruction, self.instruction) if x) or None
        return Rank1Prompt.create(query, self.prompt, joined)

    def _prepare(self, pair: Pair) -> _Work:
        if self._runner is not None:
            return self._prepare_family(self._runner, pair)
        template = self._template(pair.query, pair.instruction)
        limit = self._passage_limit(template.head, template.tail)
        passage, truncated = truncate_passage(self.engine.tokenizer, pair.document.passage, limit)
        return _Work(pair, template.render(passage), truncated, template.head)

    def _prepare_family(self, runner: FamilyRunner, pair: Pair) -> _Work:
        instruction = self._family_instruction(pair.instruction)
        head, tail = runner.frame(pair.query, instruction)
        limit = self._passage_limit(head, tail)
        passage, truncated = truncate_passage(self.engine.tokenizer, pair.document.passage, limit)
        framed = runner.build(pair.query, passage, instruction, head)
        return _Work(pair, framed.text, truncated, head, framed)

    def _passage_limit(self, head: str, tail: str) -> int | None:
        """The most passage tokens that fit: ``max_passage_tokens``, lowered so that prompt,
        budget and forced answer fit the engine's context.

        Raises:
            InvalidInputError: the query and template alone leave no room for a passage.
        """
        context = getattr(self.engine, "context_length", None)
        if context is None:
            return self.max_passage_tokens
        tok = self.engine.tokenizer
        frame = len(tok.encode(head)) + len(tok.encode(tail)) + 1  # +1: a BOS token
        budget = self.think_budget if self.reasoning or self._runner is not None else 0
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
            close=close_chain,
            shared_prefix=work.head,
        )

    def _judgment(
        self, work: _Work, logprobs: dict[int, float] | None, chain: str, prompt_tokens: int, chain_tokens: int,
        forced: bool, reasoned: bool, stop_reason: str | None = None,
    ) -> Judgment:
        if logprobs is None:  # an engine broke its contract; never invent a score
            raise RuntimeError(f"engine {self.engine.name} returned no answer log-probabilities")
        read = read_answer(logprobs, self.true_id, self.false_id)
        return Judgment(
            doc_id=work.pair.document.id,
            index=work.pair.index,
            score=read.score,
            reasoning=chain,
            answer=read.answer,
            prompt_tokens=prompt_tokens,
            reasoning_tokens=chain_tokens,
            forced=forced,
            truncated=work.truncated,
            p_true=read.p_true,
            p_false=read.p_false,
            reasoned=reasoned,
            stop_reason=stop_reason,
        )


class Qwen3Reranker(Rank1):
    """Qwen3-Reranker (:mod:`thinkrank.families.qwen3_reranker`): ``Rank1(family="qwen3-reranker")``."""

    def __init__(self, model: str | None = None, engine: str | Engine = "auto", **options: Any) -> None:
        super().__init__(model, engine, family="qwen3-reranker", **options)


class TFRank(Rank1):
    """TFRank (:mod:`thinkrank.families.tfrank`): ``Rank1(family="tfrank")``; no model is
    published, so ``model`` (or an engine instance) must be given."""

    def __init__(self, model: str | None = None, engine: str | Engine = "auto", **options: Any) -> None:
        super().__init__(model, engine, family="tfrank", **options)


@dataclass(frozen=True)
class Rank1Answer:
    """What Rank1 reads at the answer position: ``score`` = p(" true") / (p(" true") + p(" false")),
    ``answer`` ("true" when p(" true") >= p(" false")) and the two probabilities themselves."""

    score: float
    answer: str
    p_true: float
    p_false: float


def read_answer(logprobs: dict[int, float], true_id: int, false_id: int) -> Rank1Answer:
    """Rank1's scoring rule, from the exact log-probabilities of the two answer tokens: the one
    place it is written (the reranker and the distillation teacher both use it)."""
    lt, lf = logprobs[true_id], logprobs[false_id]
    return Rank1Answer(_sigmoid(lt - lf), "true" if lt >= lf else "false", math.exp(lt), math.exp(lf))


def closed_chain(generation: Generation) -> tuple[str, bool]:
    """The chain as Rank1 scores it, and whether Rank1 had to close it (``forced``): a chain
    that wrote ``</think>`` is kept whole; any other (budget, end-of-sequence) is cut as the
    released code cuts it (:func:`~thinkrank.prompts.rank1.cut_forced_chain`)."""
    if generation.stopped:
        return generation.text, False
    return cut_forced_chain(generation.text), True


def close_chain(generation: Generation) -> str:
    """The text after the prompt at which Rank1 reads the answer of ``generation``."""
    if generation.stopped:
        return generation.text + THINK_CLOSE
    return forced_close(generation.text)


def check_settings(
    think_budget: int, reasoning: bool, max_passage_tokens: int | None, temperature: float, prompt: str | None,
    seed: int | None = None, instruction: str | None = None,
) -> None:
    """Rank1's rules for its settings, checked before any model loads.

    Raises:
        InvalidInputError: a setting of the wrong type or out of range (named), or an unknown
            dataset template name.
    """
    from thinkrank.rerankers.spec import spec_options  # the ranges are declared on the spec's fields

    declared = spec_options()
    check_bool("reasoning", reasoning)
    budget = declared["think_budget"]
    check_int("think_budget", think_budget, minimum=int(budget.declared.minimum or 0) if reasoning else 0)
    declared["max_passage_tokens"].check(max_passage_tokens)
    declared["temperature"].check(temperature)
    declared["seed"].check(seed)
    check_optional_str("prompt", prompt)
    check_optional_str("instruction", instruction)
    resolve_template(prompt)  # fail early on an unknown dataset name


def family_defaults(
    family: PairFamily, model: str | None, think_budget: int | None, reasoning: bool | None, *, engine_given: bool,
    **rank1_only: Any,
) -> tuple[str | None, int, bool]:
    """``(model, generation budget, reasoning)`` for a family other than rank1: the user's where
    given, else the family's released ones.

    Raises:
        InvalidInputError: no model (nor engine instance) given for a family that publishes none, reasoning asked
            against the family's fixed setting, or one of Rank1's own options given.
    """
    defaults = {"prompt": None, "true_token": TRUE_TOKEN, "false_token": FALSE_TOKEN, "reasoning_close": REASONING_CLOSE,
                "cascade": None}
    for name, value in rank1_only.items():
        if value != defaults[name]:
            extra = (" (the cascade needs a cheap first pass; only rank1 has one, its reasoning-off score)"
                     if name == "cascade" else "")
            raise InvalidInputError(f"{name} is a rank1 option; family {family.name!r} does not take it{extra}")
    generation = family.generation
    if reasoning is not None and reasoning != generation.reasoning:
        raise InvalidInputError(f"family {family.name!r} has reasoning {'on' if generation.reasoning else 'off'} "
                                f"as released; leave reasoning unset (got reasoning={reasoning})")
    if generation.max_tokens == 0 and think_budget not in (None, 0):
        raise InvalidInputError(f"family {family.name!r} generates nothing (its answer is the token after the "
                                f"prompt); leave think_budget unset (got {think_budget})")
    model = family.default_model if model is None else model
    if model is None and not engine_given:
        raise InvalidInputError(f"family {family.name!r} publishes no model: give model=... (a fine-tune of its format)")
    return model, generation.max_tokens if think_budget is None else think_budget, generation.reasoning


def check_cascade(cascade: Cascade | int | str | None, reasoning: bool) -> Cascade | None:
    """The cascade ``cascade`` describes (None: no cascade).

    Raises:
        InvalidInputError: a malformed cascade, or one asked for with reasoning off.
    """
    if cascade is None:
        return None
    if not reasoning:
        raise InvalidInputError("cascade needs reasoning on: it reasons about the candidates it selects")
    return Cascade.parse(cascade)


def _sigmoid(x: float) -> float:
    """1 / (1 + e^-x) without under/overflow: the score p_t / (p_t + p_f) for x = log p_t - log p_f."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)
