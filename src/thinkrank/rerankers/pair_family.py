"""Running a released pointwise family (:class:`~thinkrank.families.pair.PairFamily`) through an
engine, as :mod:`thinkrank.families.pair` describes: the piece of :class:`~thinkrank.Rank1` that
serves every pair family other than Rank1's own format.

Prompt-end readings come from ``engine.next_token_logprobs`` (the query's part of the prompt
declared as a shared prefix); after-stop readings from ``engine.generate`` with the answer ids,
or, where the engine could not read them in that pass (a stop string inside a token, an engine
that ignores ``close``), from one batched ``next_token_logprobs`` over the prompt, the generated
text and the stop string it wrote. The family's ``score`` then gives the judgment's score, its
fallback and its parts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from thinkrank.engines import Engine, Generation, GenerationRequest, single_token_id
from thinkrank.errors import InvalidInputError
from thinkrank.families.base import ModelInput
from thinkrank.families.pair import PairFamily, Readings
from thinkrank.types import Judgment

# Stands for the document while the prompt's frame (the text around it) is measured; from
# Unicode's private use area, so no query or instruction holds it by accident.
_DOCUMENT_MARK = "\ue000thinkrank-document\ue000"

Batch = Callable[[list[int], list[Any]], None]


def pair_family(name: str) -> PairFamily:
    """The pointwise family named ``name`` in the registry (:mod:`thinkrank.families.registry`),
    other than rank1, whose format is Rank1's own.

    Raises:
        InvalidInputError: an unknown or unavailable family, or one that is not pointwise (the
            pointwise ones are listed).
    """
    from thinkrank.families import FAMILIES, get_family

    entry = get_family(name)
    module = entry.module()
    if entry.kind != "pair" or module is None:
        known = ", ".join(e.name for e in FAMILIES.values() if e.kind == "pair" and e.unavailable is None)
        raise InvalidInputError(f"{name!r} is not a pointwise family: give one of {known}")
    family: PairFamily = module.FAMILY
    return family


@dataclass(frozen=True)
class Framed:
    """One pair's model input: what the family built, the text it stands for, and the part of
    that text before the document (the same for every candidate of a query)."""

    model_input: ModelInput
    text: str
    head: str


class FamilyRunner:
    """Builds, reads and scores one pair family's judgments on ``engine``.

    ``max_tokens`` / ``temperature``: the generation settings in use (the family's unless the
    user set them); ``seed``: sampling seed (pair i uses ``seed + position``).
    """

    def __init__(self, family: PairFamily, engine: Engine, *, max_tokens: int, temperature: float,
                 seed: int | None) -> None:
        self.family, self.engine = family, engine
        self.max_tokens, self.temperature, self.seed = max_tokens, temperature, seed
        tok = engine.tokenizer
        self.prompt_end = {t: single_token_id(tok, t) for t in family.answer_tokens("prompt-end")}
        self.after_stop = {t: single_token_id(tok, t) for t in family.answer_tokens("after-stop")}
        if self.after_stop and max_tokens == 0:
            raise InvalidInputError(f"family {family.name!r} reads its answer after generated text: "
                                    "its generation budget must be at least 1")

    @property
    def answer_ids(self) -> list[int]:
        return [*self.prompt_end.values(), *self.after_stop.values()]

    # ---- inputs ---------------------------------------------------------------------------
    def render(self, model_input: ModelInput) -> str:
        """The text ``model_input`` stands for: the raw prompt, or the model's chat template over
        the messages followed by the assistant prefix."""
        return model_input.render(self.engine.apply_chat_template)

    def frame(self, query: str, instruction: str | None) -> tuple[str, str]:
        """The text before and after the document in this query's prompts.

        Raises:
            InvalidInputError: the family does not place the document once, verbatim.
        """
        text = self.render(self.family.build(query, _DOCUMENT_MARK, instruction))
        if text.count(_DOCUMENT_MARK) != 1:
            raise InvalidInputError(f"family {self.family.name!r} does not place the document once, verbatim, in its "
                                    "prompt: its passages cannot be cut to fit the context")
        head, tail = text.split(_DOCUMENT_MARK)
        return head, tail

    def build(self, query: str, passage: str, instruction: str | None, head: str) -> Framed:
        model_input = self.family.build(query, passage, instruction)
        return Framed(model_input, self.render(model_input), head)

    # ---- judging --------------------------------------------------------------------------
    def judge(self, framed: Sequence[Framed], progress: Callable[[int], None], positions: Sequence[int],
              on_batch: Batch) -> None:
        """Run every pair, calling ``on_batch(indices, judgments-to-be)`` with, per pair, the
        tuple ``(readings, generation or None)`` :meth:`judgment` turns into a judgment."""
        texts = [f.text for f in framed]
        heads = [f.head for f in framed]
        ids = list(self.prompt_end.values())
        if self.max_tokens == 0:
            def read(indices: list[int], results: list[dict[int, float]]) -> None:
                on_batch(indices, [(self._readings(lp, None), None) for lp in results])

            self.engine.next_token_logprobs(texts, ids, progress, on_batch=read, shared_prefixes=heads)
            return
        # Prompt-end readings of a generating family are those of the prompt itself: one pass first.
        first = self.engine.next_token_logprobs(texts, ids, shared_prefixes=heads) if ids else [{} for _ in texts]

        def generated(indices: list[int], gens: list[Generation]) -> None:
            late = self._late_answers([framed[i] for i in indices], gens)
            on_batch(indices, [(self._readings(first[i], late.get(k, g.answer_logprobs) if self._reads_after(g) else None), g)
                               for k, (i, g) in enumerate(zip(indices, gens))])

        requests = [self._request(f, pos) for f, pos in zip(framed, positions)]
        self.engine.generate(requests, progress, on_batch=generated)

    def judgment(self, result: tuple[Readings, Generation | None], *, doc_id: str, index: int, truncated: bool,
                 prompt_tokens: int) -> Judgment:
        readings, gen = result
        answer = self.family.score(readings, None if gen is None else gen.text)
        reasoning = self.family.generation.reasoning
        return Judgment(
            doc_id=doc_id,
            index=index,
            score=answer.score,
            answer=answer.answer,
            reasoning=gen.text if gen is not None and reasoning else "",
            prompt_tokens=gen.prompt_tokens if gen is not None and gen.prompt_tokens else prompt_tokens,
            reasoning_tokens=gen.num_tokens if gen is not None else 0,
            forced=gen is not None and not gen.stopped and self.family.generation.close is not None,
            truncated=truncated,
            reasoned=reasoning,
            stop_reason=gen.stop_reason if gen is not None else None,
            fallback=answer.fallback.reason if answer.fallback is not None else None,
            parts=dict(answer.parts) or None,
        )

    # ---- internals ------------------------------------------------------------------------
    def _readings(self, prompt_end: dict[int, float], after_stop: dict[int, float] | None) -> Readings:
        out: dict[str, dict[str, float]] = {}
        for reading in self.family.readings:
            values = prompt_end if reading.at == "prompt-end" else after_stop
            if values is not None:
                ids = self.prompt_end if reading.at == "prompt-end" else self.after_stop
                out[reading.name] = {t: values[ids[t]] for t in reading.tokens}
        return out

    def _reads_after(self, gen: Generation) -> bool:
        """Whether an after-stop reading exists for ``gen``: a stop string was written, or the
        family forces the answer of a continuation that did not stop."""
        return bool(self.after_stop) and (gen.stopped or self.family.generation.close is not None)

    def _after_text(self, gen: Generation) -> str | None:
        """The generated text after which the after-stop answer is read (None: cannot be told)."""
        close = self.family.generation.close
        if not gen.stopped:
            return None if close is None else close(gen.text)
        written = self.engine.tokenizer.decode(gen.token_ids)[len(gen.text):]
        # The stop string the engine cut at: the earliest, as engines match them.
        stops = sorted((s for s in self.family.generation.stop if written.startswith(s)))
        return gen.text + stops[0] if stops else None

    def _late_answers(self, framed: Sequence[Framed], gens: Sequence[Generation]) -> dict[int, dict[int, float] | None]:
        """After-stop readings the engine did not make in its pass, read with one batched
        ``next_token_logprobs`` (None where the stop string written cannot be told)."""
        pending = [k for k, g in enumerate(gens) if self._reads_after(g) and g.answer_logprobs is None]
        contexts = {k: self._after_text(gens[k]) for k in pending}
        todo = [k for k in pending if contexts[k] is not None]
        late: dict[int, dict[int, float] | None] = {k: None for k in pending}
        if todo:
            read = self.engine.next_token_logprobs([framed[k].text + str(contexts[k]) for k in todo],
                                                   list(self.after_stop.values()),
                                                   shared_prefixes=[framed[k].head for k in todo])
            late.update(zip(todo, read))
        return late

    def _request(self, framed: Framed, position: int) -> GenerationRequest:
        generation = self.family.generation
        family_close = generation.close

        def close(gen: Generation) -> str:
            text = self._after_text(gen)
            # Only reached for families that force an answer, where a text always exists.
            return text if text is not None else gen.text

        return GenerationRequest(
            **framed.model_input.request_fields(),
            max_tokens=self.max_tokens,
            stop=generation.stop,
            temperature=self.temperature,
            seed=None if self.seed is None else self.seed + position,
            answer_token_ids=tuple(self.after_stop.values()),
            close=close if family_close is not None else None,
            shared_prefix="" if framed.model_input.messages is not None else framed.head,
        )
