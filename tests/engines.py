"""Engine doubles shared by the reranker tests."""

from __future__ import annotations

from typing import Any


class Recorder:
    """A real engine, delegated to, that keeps each ``generate`` call: its requests in ``calls``
    and its generations in ``generations`` (one list per call). ``scores=False``: the reranker
    under test never asks next-token log-probabilities (listwise, setwise), and a call fails."""

    def __init__(self, engine: Any, *, scores: bool = True) -> None:
        self.inner, self.scores = engine, scores
        self.calls: list[list[Any]] = []
        self.generations: list[list[Any]] = []
        self.name, self.model_name = engine.name, engine.model_name

    @property
    def tokenizer(self) -> Any:
        return self.inner.tokenizer

    @property
    def context_length(self) -> int | None:
        return self.inner.context_length

    def apply_chat_template(self, messages: Any) -> str:
        return self.inner.apply_chat_template(messages)

    def next_token_logprobs(self, prompts, token_ids, progress=None, *, on_batch=None, shared_prefixes=None):
        if not self.scores:
            raise AssertionError("this reranker never asks next-token log-probabilities")
        return self.inner.next_token_logprobs(prompts, token_ids, progress, on_batch=on_batch,
                                              shared_prefixes=shared_prefixes)

    def generate(self, requests, progress=None, *, on_batch=None):
        gens = self.inner.generate(requests, progress, on_batch=on_batch)
        self.calls.append(list(requests))
        self.generations.append(gens)
        return gens
