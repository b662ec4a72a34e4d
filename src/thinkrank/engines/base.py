"""The one protocol every inference engine implements.

An engine does two things, on raw text prompts (a family's templates are applied by callers),
or for generation also on chat messages, which the engine gives the model its own way (the
model's chat template for local engines, the messages themselves over a chat API):

* ``generate``: continue prompts until a stop string or a token budget, and when asked, also
  return the *exact* log-probabilities of a few given token ids at the position right after
  the stop string (this is how a Rank1 chain's answer is scored in the same pass);
* ``next_token_logprobs``: the exact log-probabilities of given token ids as the next token
  after each prompt (reasoning off, forced answers, distillation filters).

Exact means read from the full softmax over the vocabulary, never from a top-k list.

Stops: a ``GenerationRequest``'s stop strings end a continuation whether they are plain text or
a single special token (the released Rank1 models' ``</think>``), and ``Generation.stop_reason``
tells a matched stop (``"stop"``) from end-of-sequence (``"eos"``) and the budget (``"length"``).
Every engine reports its ``context_length`` so prompts can be fitted to it.

Results as they finish: both methods take an optional ``on_batch(indices, results)``, called
with the input positions and results of each group of requests as soon as the group is done
(the transformers engine: each engine batch; openai: every ``concurrency`` finished requests;
vLLM: everything at the end), before ``progress`` counts them. Callers use it to save work
before the call returns (a kill then loses at most the batch in flight). Every engine reports
every position exactly once.

Shared prefixes: ``next_token_logprobs`` takes an optional ``shared_prefixes``, one text per
prompt with the meaning of ``GenerationRequest.shared_prefix`` (text that starts this prompt
and others of the call, e.g. a Rank1 query's instruction and query; ``""``: none), a hint that
their common tokens may be prefilled once. It never changes the results. The transformers
engine prefills each once; vLLM (automatic prefix caching) and servers find shared prefixes
themselves and ignore it. Every engine takes both keywords.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

Progress = Callable[[int], None]
"""Called with the number of requests just finished (for progress bars)."""

OnBatch = Callable[[list[int], list[Any]], None]
"""Called with the input positions of requests that just finished and their results, in the
same order (a :class:`Generation` each from ``generate``, a log-prob dict from
``next_token_logprobs``). Each position is reported once."""


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt to continue.

    ``answer_token_ids``: when a stop string ends the continuation, also return exact
    log-probabilities of these ids at the next position (prompt + text + stop string).
    ``seed`` makes sampling reproducible per request, whatever the batch.

    ``close``: for a continuation whose answer could not be read right after a stop string
    (budget used up, end-of-sequence, a stop string inside a token), the text to follow the
    prompt when the answer ids are scored; an engine that honours it fills ``answer_logprobs``
    with the values ``next_token_logprobs([prompt + close(generation)])`` would give (the
    transformers engine reads them from the chain's KV cache). ``shared_prefix``: text that
    starts this prompt and others of the same call (e.g. instruction + query), a hint that
    their common tokens may be prefilled once.

    ``messages``: chat turns instead of a prompt (``prompt`` is then ``""``), for a family whose
    model needs its chat template; the text they stand for is the template's rendering, ready
    for the assistant's turn, followed by ``assistant_prefix`` (text the released code writes at
    the start of that turn, e.g. ``"<think>\\n"``). An engine renders them itself (or sends them
    as chat messages), so no engine has to map text back to messages.

    ``top_p`` / ``top_k`` / ``min_p``: the usual filters on the distribution sampled from when
    ``temperature`` > 0 (nucleus mass in (0, 1], the ``k`` most likely tokens, tokens at least
    ``min_p`` times the most likely one's probability), as transformers' ``generate`` and vLLM
    define them. None leaves the engine's plain sampling (no filter); greedy ignores them.
    """

    prompt: str
    max_tokens: int
    stop: tuple[str, ...] = ()
    temperature: float = 0.0
    seed: int | None = None
    answer_token_ids: tuple[int, ...] = ()
    close: Callable[[Generation], str] | None = None
    shared_prefix: str = ""
    messages: tuple[dict[str, str], ...] | None = None
    assistant_prefix: str = ""
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None

    def __post_init__(self) -> None:
        from thinkrank.errors import InvalidInputError

        check_filters(self.top_p, self.top_k, self.min_p)

        if self.messages is not None and self.prompt:
            raise InvalidInputError("a GenerationRequest takes a prompt or messages, not both; give prompt=\"\" with messages")
        if self.messages is None and self.assistant_prefix:
            raise InvalidInputError("assistant_prefix follows chat messages; with a raw prompt, end the prompt with it")


def check_filters(top_p: float | None, top_k: int | None, min_p: float | None) -> None:
    """Refuse sampling filters outside their ranges (None: off).

    Raises:
        InvalidInputError: naming the value and its range.
    """
    from thinkrank.errors import InvalidInputError

    if top_p is not None and not (isinstance(top_p, (int, float)) and 0.0 < top_p <= 1.0):
        raise InvalidInputError(f"top_p must be in (0, 1] (1 or None: no nucleus filter), got {top_p!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise InvalidInputError(f"top_k must be an integer >= 1 (None: no top-k filter), got {top_k!r}")
    if min_p is not None and not (isinstance(min_p, (int, float)) and 0.0 <= min_p <= 1.0):
        raise InvalidInputError(f"min_p must be in [0, 1] (0 or None: no min-p filter), got {min_p!r}")


def sampling_filters(request: GenerationRequest) -> dict[str, float | int]:
    """The filters ``request`` sets, by name (empty for plain sampling and for greedy)."""
    if request.temperature <= 0:
        return {}
    given = {"top_p": request.top_p, "top_k": request.top_k, "min_p": request.min_p}
    return {k: v for k, v in given.items() if v is not None}


@dataclass
class Generation:
    """What an engine wrote for one request.

    ``text`` is the continuation up to, not including, the stop string. ``stop_reason`` is
    ``"stop"`` (a stop string was written), ``"eos"`` (end-of-sequence token) or ``"length"``
    (budget used up). ``answer_logprobs`` maps each requested answer id to its exact
    log-probability after the stop string, or is None when the engine could not read it in
    the same pass (the caller then asks ``next_token_logprobs``).
    """

    text: str
    stop_reason: str
    num_tokens: int
    prompt_tokens: int = 0
    token_ids: list[int] = field(default_factory=list)
    answer_logprobs: dict[int, float] | None = None

    @property
    def stopped(self) -> bool:
        return self.stop_reason == "stop"


@runtime_checkable
class Tokenizer(Protocol):
    """The part of a tokenizer thinkrank needs: counting, cutting and single-token ids."""

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...


@runtime_checkable
class Engine(Protocol):
    """An inference backend. See the module docstring for the contract."""

    name: str
    model_name: str

    @property
    def tokenizer(self) -> Tokenizer: ...

    @property
    def context_length(self) -> int | None:
        """The most tokens (prompt plus generated) the model takes; None when unknown."""
        ...

    def generate(
        self, requests: Sequence[GenerationRequest], progress: Progress | None = None, *,
        on_batch: OnBatch | None = None,
    ) -> list[Generation]: ...

    def next_token_logprobs(
        self, prompts: Sequence[str], token_ids: Sequence[int], progress: Progress | None = None, *,
        on_batch: OnBatch | None = None, shared_prefixes: Sequence[str] | None = None,
    ) -> list[dict[int, float]]: ...

    def apply_chat_template(self, messages: Sequence[dict[str, str]]) -> str:
        """The model's chat template applied to ``messages``, ready for the assistant's turn."""
        ...


def single_token_id(tokenizer: Tokenizer, text: str) -> int:
    """The id of ``text`` when it is exactly one token (e.g. ``" true"``), else an error."""
    from thinkrank.errors import InvalidInputError

    ids = tokenizer.encode(text)
    if len(ids) != 1:
        raise InvalidInputError(
            f"{text!r} is {len(ids)} tokens for this tokenizer ({ids}); the answer must be a single "
            "token to be scored exactly — pick answer words that are single tokens"
        )
    return ids[0]

