"""A teacher that is any local thinkrank engine (transformers, vLLM, …) through the Engine protocol.

Each prompt is continued until ``</think>``; the answer is then read from the exact
log-probabilities of ``" true"`` and ``" false"`` right after the close (in the same pass when
the engine can, else with one more forward pass). A chain that does not close within the
budget (or ends with end-of-sequence) has no answer unless ``force_answer`` is set: then it
gets the released forced answer (:func:`~thinkrank.prompts.rank1.forced_close`: cut after its
last ``.``/``!``/``?``, answered after ``"\\n" + chain + "\\n</think>"``, ``"forced"``), as Rank1
does at inference.

The forced answer is requested from the engine with the generation (``GenerationRequest.close``),
so an engine that honours it (transformers: from the chain's own KV cache) never re-reads prompt
and chain; answers an engine did not fill in are read with one more batched pass.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from thinkrank.distill.records import Trace
from thinkrank.distill.teacher import DEFAULT_MAX_TOKENS, DEFAULT_TEMPERATURE, Job, TeacherSettings
from thinkrank.engines.base import Engine, Generation, GenerationRequest, single_token_id
from thinkrank.prompts.rank1 import THINK_CLOSE
from thinkrank.rerankers.pointwise import close_chain, closed_chain, read_answer


class EngineTeacher:
    """Generate traces with a local engine.

    Args:
        engine: any :class:`~thinkrank.engines.base.Engine`.
        temperature / max_tokens: sampling temperature and the chain's token budget.
        seed: base seed; each prompt gets its own seed derived from it and the prompt's key, so
            a trace does not depend on which other prompts shared its batch.
        force_answer: answer chains that ran out of budget (see the module docstring).
        chunk_size: prompts per engine call; every finished chunk is stored before the next.
    """

    def __init__(self, engine: Engine, *, temperature: float = DEFAULT_TEMPERATURE,
                 max_tokens: int = DEFAULT_MAX_TOKENS, seed: int | None = 0, force_answer: bool = False,
                 chunk_size: int = 32, true_token: str = " true", false_token: str = " false") -> None:
        self.engine = engine
        self.force_answer = force_answer
        self.chunk_size = max(1, chunk_size)
        self.true_id = single_token_id(engine.tokenizer, true_token)
        self.false_id = single_token_id(engine.tokenizer, false_token)
        self.settings = TeacherSettings(
            model=engine.model_name, api="engine", temperature=temperature, max_tokens=max_tokens, seed=seed,
            extra={"engine": engine.name, "force_answer": force_answer, "answers": [true_token, false_token]},
        )

    def run(self, jobs: Sequence[Job]) -> Iterator[tuple[Job, Trace | Exception]]:
        """Yield ``(job, trace)`` chunk by chunk, in input order."""
        for start in range(0, len(jobs), self.chunk_size):
            chunk = jobs[start:start + self.chunk_size]
            gens = self.engine.generate([self._request(job) for job in chunk])
            yield from zip(chunk, self._traces(chunk, gens))

    def _request(self, job: Job) -> GenerationRequest:
        s = self.settings
        seed = (int(job.key[:8], 16) + (s.seed or 0)) % (2 ** 31)
        # Without force_answer a cut chain stays unanswered, so only Rank1's close for chains
        # whose stop string fell inside a token would be used: not worth a close for every cut.
        return GenerationRequest(job.prompt, s.max_tokens, stop=(THINK_CLOSE,), temperature=s.temperature,
                                 seed=seed, answer_token_ids=(self.true_id, self.false_id),
                                 close=close_chain if self.force_answer else None)

    def _traces(self, chunk: Sequence[Job], gens: Sequence[Generation]) -> list[Trace]:
        chains: list[str] = []
        finish: list[str] = []
        for gen in gens:
            chain, cut = closed_chain(gen)  # Rank1's rule: a chain that did not close is cut
            chains.append(chain)
            finish.append(("forced" if self.force_answer else gen.stop_reason) if cut else "stop")
        answered = [f in ("stop", "forced") for f in finish]
        # Answers the engine did not read with the generation come from one more batched pass,
        # after Rank1's close (``</think>`` after a closed chain, the forced answer after a cut one).
        late_idx = [i for i, g in enumerate(gens) if answered[i] and g.answer_logprobs is None]
        contexts = [chunk[i].prompt + close_chain(gens[i]) for i in late_idx]
        late = dict(zip(late_idx, self.engine.next_token_logprobs(contexts, [self.true_id, self.false_id]))) if contexts else {}
        out = []
        for i, gen in enumerate(gens):
            logprobs = late.get(i, gen.answer_logprobs if answered[i] else None)
            if not answered[i] or logprobs is None:
                out.append(Trace(gen.text.strip(), "", finish[i], gen.prompt_tokens, gen.num_tokens))
                continue
            read = read_answer(logprobs, self.true_id, self.false_id)
            out.append(Trace(chains[i].strip(), read.answer, finish[i], gen.prompt_tokens,
                             gen.num_tokens, {"p_true": read.score}))
        return out
