"""What every teacher shares: its settings, the unit of work, and the request it sends.

A teacher turns Rank1 prompts into :class:`~thinkrank.distill.records.Trace` objects. Three
kinds exist: a live OpenAI-compatible API (:mod:`~thinkrank.distill.api_teacher`), the OpenAI
batch file format (:mod:`~thinkrank.distill.batch`) and any local thinkrank engine
(:mod:`~thinkrank.distill.engine_teacher`). Each yields ``(job, trace or error)`` as work
finishes, so the caller can store every trace the moment it exists.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from thinkrank.distill.records import LabeledPair, Trace
from thinkrank.errors import InvalidInputError

DEFAULT_TEMPERATURE = 0.3  # the paper's R1 setting
DEFAULT_MAX_TOKENS = 1000  # "all reasoning chains were shorter than 1000 tokens"
APIS = ("chat", "completions", "engine")


@dataclass(frozen=True)
class TeacherSettings:
    """Everything besides the prompt that changes what a teacher writes (part of the store key).

    ``api``: ``chat`` (the prompt is one user message), ``completions`` (raw text continued
    after ``<think>``) or ``engine`` (a local thinkrank engine). ``extra`` holds more request
    fields (``top_p``, provider options) and, for engines, options such as ``force_answer``.
    """

    model: str
    api: str = "chat"
    temperature: float = DEFAULT_TEMPERATURE
    max_tokens: int = DEFAULT_MAX_TOKENS
    seed: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.api not in APIS:
            raise InvalidInputError(f"unknown teacher api {self.api!r}; choose one of {', '.join(APIS)}")
        if not self.model:
            raise InvalidInputError("the teacher needs a model name")
        if self.temperature < 0:
            raise InvalidInputError(f"temperature must be >= 0, got {self.temperature}")
        if self.max_tokens < 1:
            raise InvalidInputError(f"max_tokens must be >= 1, got {self.max_tokens}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Job:
    """One prompt to send; ``key`` is its store key, ``pair`` the (first) pair it came from."""

    key: str
    prompt: str
    pair: LabeledPair


class Teacher(Protocol):
    """Turns jobs into traces, yielding each as soon as it is done (in any order).

    A failed job yields its exception (it is retried on the next run); an error that dooms
    every job (bad key, unknown model) is raised instead.
    """

    settings: TeacherSettings

    def run(self, jobs: Sequence[Job]) -> Iterator[tuple[Job, Trace | Exception]]: ...


def request_body(settings: TeacherSettings, prompt: str) -> tuple[str, dict[str, Any]]:
    """``(url, body)`` of the OpenAI request for ``prompt``: the same for live calls and batch files."""
    body: dict[str, Any] = {"model": settings.model}
    if settings.api == "chat":
        url = "/v1/chat/completions"
        body["messages"] = [{"role": "user", "content": prompt}]
    elif settings.api == "completions":
        url = "/v1/completions"
        body["prompt"] = prompt
    else:
        raise InvalidInputError("a local engine teacher sends no HTTP requests")
    body["temperature"] = settings.temperature
    body["max_tokens"] = settings.max_tokens
    if settings.seed is not None:
        body["seed"] = settings.seed
    body.update(settings.extra)
    return url, body
