"""The OpenAI batch file format: write the requests, read the results back into the store.

Request lines are ``{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body"}``;
result lines are ``{"id", "custom_id", "response": {"status_code", "body"}, "error"}``. The
``custom_id`` is the trace's store key, so results land on the right pair whatever order the
provider returns them in, and a second batch only asks for what the first did not answer.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from thinkrank.distill.answers import trace_from_response
from thinkrank.distill.records import Trace
from thinkrank.distill.teacher import Job, TeacherSettings, request_body
from thinkrank.errors import EngineError, InvalidInputError
from thinkrank.io import iter_jsonl, open_text


def write_batch_requests(jobs: Iterable[Job], settings: TeacherSettings, path: str | Path) -> int:
    """Write one batch request line per job; returns how many were written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with open_text(path, "w") as out:
        for job in jobs:
            url, body = request_body(settings, job.prompt)
            out.write(json.dumps({"custom_id": job.key, "method": "POST", "url": url, "body": body},
                                 ensure_ascii=False) + "\n")
            count += 1
    return count


@dataclass
class BatchResults:
    """A teacher whose answers are already in a batch result file (or several).

    ``unknown`` counts result lines whose ``custom_id`` matches no job: results of another
    pairs file or other teacher settings.
    """

    settings: TeacherSettings
    paths: list[Path]
    unknown: int = 0
    read: int = field(default=0)

    def run(self, jobs: Iterable[Job]) -> Iterator[tuple[Job, Trace | Exception]]:
        """Yield ``(job, trace)`` for each successful result line, ``(job, error)`` for failed ones."""
        by_key: Mapping[str, Job] = {job.key: job for job in jobs}
        for path in self.paths:
            for number, obj in iter_jsonl(path):
                self.read += 1
                job = by_key.get(str(obj.get("custom_id")))
                if job is None:
                    self.unknown += 1
                    continue
                yield job, _result(obj, f"{path}:{number}")


def _result(obj: Mapping[str, object], where: str) -> Trace | Exception:
    error = obj.get("error")
    response = obj.get("response")
    if error:
        return EngineError(f"{where}: the batch reports an error: {json.dumps(error)[:300]}")
    if not isinstance(response, Mapping):
        return InvalidInputError(f"{where}: a batch result line needs a 'response' object")
    status = response.get("status_code")
    body = response.get("body")
    if status != 200 or not isinstance(body, Mapping):
        return EngineError(f"{where}: the request failed with status {status}: {json.dumps(body)[:300]}")
    try:
        return trace_from_response(body)
    except EngineError as exc:
        return EngineError(f"{where}: {exc}")
