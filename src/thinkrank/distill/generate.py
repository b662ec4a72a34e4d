"""Resumable teacher generation: prompts for pairs, traces from a teacher, each stored once.

    >>> jobs = make_jobs(pairs, teacher.settings, template="scifact")
    >>> report = generate_traces(jobs, teacher, store)       # skips what the store has
    >>> records, missing = collect_traces(pairs, store, teacher.settings, template="scifact")
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from thinkrank.distill.records import LabeledPair
from thinkrank.distill.store import TraceStore, settings_digest, trace_key
from thinkrank.distill.teacher import Job, Teacher, TeacherSettings
from thinkrank.prompts.rank1 import build_rank1_prompt, resolve_template


@dataclass
class GenerationReport:
    """What one generation run did: ``cached`` prompts were already stored and not sent again."""

    prompts: int
    cached: int
    generated: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def remaining(self) -> int:
        return self.prompts - self.cached - self.generated

    def to_dict(self) -> dict[str, Any]:
        return {"prompts": self.prompts, "cached": self.cached, "generated": self.generated,
                "failed": self.failed, "remaining": self.remaining, "seconds": round(self.seconds, 2),
                "errors": self.errors}


def pair_prompt(pair: LabeledPair, template: str | None = None) -> str:
    """The Rank1 prompt the teacher sees for ``pair`` (a released dataset template, when given)."""
    return build_rank1_prompt(pair.query, pair.passage, template=template)


def make_jobs(pairs: Sequence[LabeledPair], settings: TeacherSettings, template: str | None = None) -> list[Job]:
    """One job per distinct prompt (pairs with the same query and passage share one trace)."""
    resolve_template(template)  # an unknown template name fails before any work
    digest = settings.as_dict()
    jobs: dict[str, Job] = {}
    for pair in pairs:
        prompt = pair_prompt(pair, template)
        key = trace_key(digest, prompt)
        jobs.setdefault(key, Job(key, prompt, pair))
    return list(jobs.values())


def generate_traces(jobs: Sequence[Job], teacher: Teacher, store: TraceStore, *,
                    progress: Callable[[int], None] | None = None, max_errors_kept: int = 5) -> GenerationReport:
    """Send every job the store does not have yet to ``teacher``; store each trace as it arrives.

    Failed jobs are counted (the first few errors kept) and left for the next run. An
    interruption (Ctrl-C) or a fatal teacher error propagates, with every finished trace
    already committed.
    """
    start = time.perf_counter()
    digest = store.register(teacher.settings.as_dict())
    have = store.existing(j.key for j in jobs)
    todo = [j for j in jobs if j.key not in have]
    report = GenerationReport(prompts=len(jobs), cached=len(jobs) - len(todo))
    if progress and report.cached:
        progress(report.cached)
    try:
        for job, result in teacher.run(todo):
            if isinstance(result, Exception):
                report.failed += 1
                if len(report.errors) < max_errors_kept:
                    report.errors.append(f"{job.pair.qid}/{job.pair.docid}: {type(result).__name__}: {result}")
            elif store.put(job.key, result, settings=digest, qid=job.pair.qid, docid=job.pair.docid):
                report.generated += 1
            if progress:
                progress(1)
    finally:
        report.seconds = time.perf_counter() - start
    return report


def collect_traces(pairs: Sequence[LabeledPair], store: TraceStore, settings: TeacherSettings,
                   template: str | None = None) -> tuple[list[dict[str, Any]], int]:
    """Trace records (pair + prompt + teacher output) for the pairs the store has answered, in
    pair order, and how many pairs have no trace yet."""
    as_dict = settings.as_dict()
    digest = settings_digest(as_dict)
    keyed = [(pair, pair_prompt(pair, template)) for pair in pairs]
    keys = [trace_key(as_dict, prompt) for _, prompt in keyed]
    traces = store.get_many(set(keys))
    records = []
    for (pair, prompt), key in zip(keyed, keys):
        trace = traces.get(key)
        if trace is None:
            continue
        records.append({**pair.to_dict(), "prompt": prompt, "template": template, "teacher": settings.model,
                        "teacher_settings": digest, "key": key, **trace.to_dict()})
    return records, len(pairs) - len(records)
