"""Distillation: sample labelled pairs, collect a teacher's reasoning traces, filter them into
training data (Rank1 paper §2).

    >>> from thinkrank.distill import MixConfig, sample_pairs, make_jobs, generate_traces, TraceStore
    >>> pairs = sample_pairs(collection, run, MixConfig(total=1000)).pairs
    >>> teacher = APITeacher(TeacherSettings("deepseek-reasoner"), base_url=..., api_key=...)
    >>> with TraceStore("traces.sqlite") as store:
    ...     generate_traces(make_jobs(pairs, teacher.settings), teacher, store)

Names are imported lazily, so the ``openai`` client and torch load only when used.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "LabeledPair": "records", "Trace": "records", "read_pairs": "records", "read_records": "records",
    "write_jsonl": "records",
    "MixConfig": "sampling", "SampleResult": "sampling", "sample_pairs": "sampling", "DEFAULT_SHARES": "sampling",
    "parse_answer": "answers", "split_reasoning": "answers", "trace_from_response": "answers",
    "TraceStore": "store", "trace_key": "store",
    "TeacherSettings": "teacher", "Job": "teacher", "Teacher": "teacher", "request_body": "teacher",
    "APITeacher": "api_teacher", "EngineTeacher": "engine_teacher",
    "BatchResults": "batch", "write_batch_requests": "batch",
    "RateLimiter": "throttle", "backoff_delay": "throttle",
    "make_jobs": "generate", "generate_traces": "generate", "collect_traces": "generate",
    "GenerationReport": "generate", "pair_prompt": "generate",
    "FilterConfig": "filtering", "FilterResult": "filtering", "filter_traces": "filtering",
    "balance_classes": "filtering",
    "rank1_judge": "self_filter",
    "completion_text": "export", "sft_examples": "export", "write_sft_jsonl": "export",
    "write_llamafactory": "export",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"thinkrank.distill.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'thinkrank.distill' has no attribute {name!r}")
