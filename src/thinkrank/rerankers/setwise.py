"""Rank-R1: a setwise reasoning reranker (a sort over "which of these is most relevant?" calls).

The family (:mod:`thinkrank.families.rank_r1`) says what the model is shown and how its answer
is read, and runs the released heapsort or bubblesort as a state machine; this module gives it
a model. Each round, the pending comparison of every query still sorting goes to the engine in
one ``generate`` call, so many queries cost as many calls as the longest sort has comparisons.

Every unexpected answer (no ``<think>…</think><answer>[k]</answer>``, or a label outside the
set) keeps the parent, as released, and is recorded in the ranking's comparison traces and
logged, never applied silently.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from thinkrank.engines import Engine, Generation, GenerationRequest, load_engine, resolve_engine_name
from thinkrank.errors import InvalidInputError
from thinkrank.families import rank_r1
from thinkrank.families.base import Kind
from thinkrank.families.rank_r1 import Comparison, SetwiseSort
from thinkrank.families.truncation import token_truncation
from thinkrank.rerankers.base import RequestLike, Reranker, RerankRequest, as_request
from thinkrank.rerankers.parsing import split_reasoning
from thinkrank.rerankers.truncation import widest_prompt
from thinkrank.types import ComparisonTrace, Document, Judgment, Ranking, as_documents, check_instruction, check_query
from thinkrank.validation import check_bool, check_int, check_optional_str, check_sampling, check_top_n

log = logging.getLogger(__name__)


@dataclass
class _Query:
    """One query's sort, with the texts its comparisons show."""

    request: RerankRequest
    query: str
    instruction: str | None
    docs: list[Document]
    passages: list[str]  # as shown (cut)
    truncated: list[bool]
    sort: SetwiseSort
    traces: list[ComparisonTrace] = field(default_factory=list)


class RankR1(Reranker):
    """Setwise reasoning reranker (Rank-R1, ielab/llm-rankers).

    Args:
        model: hub id (default: the released LoRA adapter ``ielabgroup/Rank-R1-7B-v0.1``), local
            model or adapter directory; a released adapter id is read from the hub (or its
            cache) and applied to the base its ``adapter_config.json`` names (transformers
            engine; vLLM needs the adapter merged first); ignored when ``engine`` is an Engine.
        engine: ``"auto"``, ``"transformers"``, ``"vllm"``, ``"openai"`` or an Engine.
        method: ``"heapsort"`` (released default) or ``"bubblesort"``; ``k``: documents brought
            to the top (10); the others follow in their given order, as released.
        num_child: children per heap node / window step (19: sets of up to 20 documents).
        max_tokens: generation budget per comparison (2048, as released).
        max_passage_tokens / max_query_tokens: the released cut (``tokenize`` then
            ``convert_tokens_to_string``) to this many tokens; None: never cut. Released runs
            use 512 and 32 on TREC DL, 1024 and 1024 on BRIGHT; the query is not cut by default.
        instruction: text appended to every query (after a per-query instruction).
        shuffle / seed: each set is shown in an order drawn from ``random.Random(seed)``, one
            generator per query, so rankings do not depend on which queries share a call;
            ``shuffle=False`` shows the sort's order. With ``temperature > 0`` comparison ``i``
            of a query samples with seed ``seed + i``.
        engine_options: passed to the engine's constructor.
    """

    kind: ClassVar[Kind] = "set"

    def __init__(
        self,
        model: str = rank_r1.DEFAULT_MODEL,
        engine: str | Engine = "auto",
        *,
        method: rank_r1.Method = rank_r1.METHOD,
        k: int = rank_r1.TOP_K,
        num_child: int = rank_r1.NUM_CHILD,
        max_tokens: int = rank_r1.SAMPLING.max_tokens,
        max_passage_tokens: int | None = rank_r1.PASSAGE_TOKENS,
        max_query_tokens: int | None = None,
        instruction: str | None = None,
        shuffle: bool = True,
        seed: int = 0,
        temperature: float = rank_r1.SAMPLING.temperature,
        **engine_options: Any,
    ) -> None:
        SetwiseSort(0, method=method, k=k, num_child=num_child)  # its own checks, before any model loads
        check_int("max_tokens", max_tokens, minimum=1)
        check_int("max_passage_tokens", max_passage_tokens, minimum=1, optional=True)
        check_int("max_query_tokens", max_query_tokens, minimum=1, optional=True)
        check_optional_str("instruction", instruction)
        check_bool("shuffle", shuffle)
        check_int("seed", seed)
        check_sampling(temperature, seed)
        self.engine = load_engine(adapter_source(model, engine), engine, **engine_options)
        self.method, self.k, self.num_child = method, k, num_child
        self.max_tokens = max_tokens
        self.max_passage_tokens, self.max_query_tokens = max_passage_tokens, max_query_tokens
        self.instruction = instruction
        self.shuffle, self.seed = shuffle, seed
        self.temperature = temperature

    @property
    def settings(self) -> dict[str, Any]:
        """Everything that changes a ranking besides query and documents (for caches and logs)."""
        return {
            "mode": "setwise",
            "family": rank_r1.NAME,
            "model": self.engine.model_name,
            "engine": self.engine.name,
            "method": self.method,
            "k": self.k,
            "num_child": self.num_child,
            "max_tokens": self.max_tokens,
            "max_passage_tokens": self.max_passage_tokens,
            "max_query_tokens": self.max_query_tokens,
            "cut": "tokenize/convert_tokens_to_string",  # the released cut, not thinkrank's id round trip
            "instruction": self.instruction,
            "shuffle": self.shuffle,
            "seed": self.seed if self.shuffle or self.temperature > 0 else None,
            "temperature": self.temperature,
            "scores": "reciprocal-rank-distinct",  # 1/(rank+1): the sorted top k, then the given order
        }

    # ---- public API -----------------------------------------------------------------------
    def rerank_many(self, requests: Sequence[RequestLike], top_n: int | None = None) -> list[Ranking]:
        """Rerank many queries: each round, the pending comparison of every query still sorting
        goes to the engine in one ``generate`` call.

        ``Ranking.comparisons`` holds every comparison's trace (what was shown, the chain, the
        answer and the document chosen, or the fallback). Scores are ``1 / (p + 1)`` for final
        position ``p``. A judgment's ``reasoning`` (and ``prompt_tokens``) come from the last
        comparison that chose it ("" for a document never chosen).

        Raises:
            InvalidInputError: an empty query, a bad document or instruction, duplicate document
                ids, a bad top_n, or a set too long for the model's context.
        """
        check_top_n(top_n)  # before any comparison runs, not after
        queries = [self._start(as_request(item, i)) for i, item in enumerate(requests)]

        def compare(batch: list[tuple[int, Comparison]]) -> list[int | None]:
            asked = [(queries[i], c) for i, c in batch]
            gens = self.engine.generate([self._request(q, c) for q, c in asked])
            return [self._read(q, c, gen) for (q, c), gen in zip(asked, gens)]

        rank_r1.sort_many([q.sort for q in queries], compare)
        return [self._ranking(q).truncate(top_n) for q in queries]

    def check(self, request: RequestLike) -> None:
        self._start(as_request(request, 0))

    # ---- internals ------------------------------------------------------------------------
    def _start(self, req: RerankRequest) -> _Query:
        query = check_query(req.query)
        docs = as_documents(req.documents)
        check_instruction(req.instruction)
        instruction = " ".join(x.strip() for x in (req.instruction, self.instruction) if x and x.strip()) or None
        if self.max_query_tokens is not None:
            query = self._cut(self.max_query_tokens)(query)
        cut = self._cut(self.max_passage_tokens) if self.max_passage_tokens is not None else None
        passages = [cut(d.passage) if cut else d.passage for d in docs]
        sort = SetwiseSort(len(docs), method=self.method, k=self.k, num_child=self.num_child,
                           shuffle=self.shuffle, seed=self.seed)
        q = _Query(req, query, instruction, docs, passages, [p != d.passage for p, d in zip(passages, docs)], sort)
        if sort.pending is not None:
            self._check_context(q)
        return q

    def _cut(self, max_tokens: int) -> Any:
        """The released cut, on the engine's Hugging Face tokenizer (every engine has one)."""
        tok = self.engine.tokenizer
        return token_truncation(getattr(tok, "hf", tok), max_tokens)

    def _check_context(self, q: _Query) -> None:
        """Refuse, before any generation, a query whose largest possible set (the prompt around
        its ``num_child + 1`` longest passages) plus ``max_tokens`` exceeds the context.

        Raises:
            InvalidInputError: naming the sizes and what to lower.
        """
        context = getattr(self.engine, "context_length", None)
        if context is None:
            return
        size = min(self.num_child + 1, len(q.passages))
        frame = rank_r1.build_input(q.query, [""] * size, instruction=q.instruction).render(
            self.engine.apply_chat_template)
        prompt, n = widest_prompt(self.engine.tokenizer, frame, q.passages, size)
        need = prompt + n + self.max_tokens  # +1 a passage: tokens merging at its edges
        if need > context:
            raise InvalidInputError(
                f"a comparison of query {q.query[:60]!r} may need {need} tokens (prompt {prompt} "
                f"with its {size} longest passages, plus max_tokens {self.max_tokens}), more than the model's "
                f"context of {context}: lower max_passage_tokens, num_child or max_tokens"
            )

    def _request(self, q: _Query, comparison: Comparison) -> GenerationRequest:
        chat = rank_r1.comparison_input(q.query, q.passages, comparison, instruction=q.instruction)
        seed = self.seed + len(q.traces) if self.temperature > 0 else None
        return GenerationRequest(**chat.request_fields(), max_tokens=self.max_tokens,
                                 temperature=self.temperature, seed=seed)

    def _read(self, q: _Query, comparison: Comparison, gen: Generation) -> int | None:
        answer = rank_r1.parse_set(gen.text, len(comparison.shown))
        chosen = rank_r1.chosen_candidate(comparison, answer)
        reasoning, after = split_reasoning(gen.text)
        trace = ComparisonTrace(
            step=len(q.traces), indices=list(comparison.docs), shown=list(comparison.shown), reasoning=reasoning,
            answer=(after if after is not None else gen.text).strip(), chosen=chosen,
            fallback=answer.fallback.reason if answer.fallback else None,
            detail=answer.fallback.detail if answer.fallback else "", prompt_tokens=gen.prompt_tokens,
            completion_tokens=gen.num_tokens, stop_reason=gen.stop_reason,
        )
        q.traces.append(trace)
        if chosen is None:
            log.warning(
                "setwise comparison %d of query %r: %s (%d tokens, stop: %s)", trace.step,
                q.request.query_id or q.query[:60], trace.detail, gen.num_tokens, gen.stop_reason,
            )
        return chosen

    def _ranking(self, q: _Query) -> Ranking:
        chose = {t.chosen: t for t in q.traces if t.chosen is not None}  # the last comparison choosing each
        judgments = []
        for pos, index in enumerate(q.sort.ranking()):
            judgment = Judgment(doc_id=q.docs[index].id, index=index, score=1.0 / (pos + 1),
                                truncated=q.truncated[index])
            if index in chose:
                trace = chose[index]
                judgment.reasoning, judgment.prompt_tokens = trace.reasoning, trace.prompt_tokens
            judgments.append(judgment)
        return Ranking(q.request.query, judgments, q.request.query_id, comparisons=q.traces)


def adapter_source(model: Any, engine: str | Engine) -> Any:
    """What to give the engine for ``model``: a released Rank-R1 adapter id (a LoRA adapter on
    the hub, see :data:`~thinkrank.families.rank_r1.MODELS`) becomes its local snapshot
    directory, which the local engines read as base (from its ``adapter_config.json``) plus
    adapter; anything else, and any model for a server (``openai``) or a given Engine, as is.

    Raises:
        ModelLoadError: the hub cannot be reached and the adapter is not in the local cache.
    """
    if not isinstance(engine, str) or model not in rank_r1.MODELS:
        return model
    if resolve_engine_name(engine) not in ("transformers", "vllm"):
        return model
    from huggingface_hub import snapshot_download

    from thinkrank.hub import local_files_only

    offline = local_files_only(model, what="Rank-R1 adapter", filename="adapter_config.json")
    return snapshot_download(model, local_files_only=offline)
