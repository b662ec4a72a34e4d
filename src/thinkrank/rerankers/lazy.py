"""A reranker that loads its model only when a judgment must be computed.

Cache keys hold the reranker's ``settings``, and those name what only a loaded engine knows (the
model's display name, the answer token ids). :class:`LazyReranker` remembers, in the judgment
cache, the settings the spec last built, so a rerun whose judgments are all cached computes its
keys, reads every result back and never loads the model. The memo is keyed by the spec and, for
a local model, by its path and file times: a changed model folder is built again. Should a built
reranker's settings still differ from the remembered ones, the run stops before mixing results
(the memo is updated: running it again works).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from thinkrank.cache import JudgmentCache, digest
from thinkrank.errors import InvalidInputError
from thinkrank.families.base import Kind
from thinkrank.rerankers.base import RequestLike, Reranker, instance_kind
from thinkrank.rerankers.spec import RerankerSpec, build_reranker
from thinkrank.types import Judgment, Ranking


def spec_fingerprint(spec: RerankerSpec) -> str:
    """What identifies the reranker ``spec`` builds, short of loading it: every field, the
    engine that will run, and a local model's absolute path and file modification times."""
    fields = {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec) if f.name != "engine_options"}
    fields["engine_options"] = dict(spec.engine_options)
    fields["engine_name"] = spec.engine_name
    model = Path(spec.model_name)
    if model.exists():
        files = [model, *(model.iterdir() if model.is_dir() else ())]
        fields["model_files"] = [str(model.resolve()), max(f.stat().st_mtime_ns for f in files)]
    return digest(fields)


class LazyReranker(Reranker):
    """The reranker ``spec`` describes, built on first use of ``judge`` or ``rerank_many`` (or of
    ``settings`` when ``cache`` does not remember them). Put it behind a
    :class:`~thinkrank.rerankers.cached.CachedReranker` over the same ``cache``."""

    def __init__(self, spec: RerankerSpec, cache: JudgmentCache, *,
                 progress: Callable[[int, int], None] | None = None) -> None:
        self.spec = spec
        self._cache = cache
        self._memo = spec_fingerprint(spec)
        self._remembered = cache.remembered(self._memo)
        self._progress = progress
        self._built: Reranker | None = None

    @instance_kind
    def kind(self) -> Kind:
        return self.spec.kind  # known before the model loads, as judges is

    @property
    def judges(self) -> Kind:
        return self.spec.judges

    @property
    def loaded(self) -> bool:
        """Whether the model was loaded."""
        return self._built is not None

    @property
    def built(self) -> Reranker:
        if self._built is None:
            self._built = build_reranker(self.spec, progress=self._progress)
            actual = self._built.settings
            self._cache.remember(self._memo, actual)
            if self._remembered is not None and actual != self._remembered:
                raise InvalidInputError(
                    f"the model {self.spec.model_name} gives other settings than the judgment cache "
                    f"{self._cache.path} remembered for it (was it replaced?); run the same command again")
        return self._built

    @property
    def settings(self) -> dict[str, Any]:
        if self._built is None and self._remembered is not None:
            return self._remembered
        return self.built.settings

    @property
    def progress(self) -> Callable[[int, int], None] | None:
        return getattr(self._built, "progress", None) if self._built is not None else self._progress

    @progress.setter
    def progress(self, value: Callable[[int, int], None] | None) -> None:
        self._progress = value
        if self._built is not None:
            self._built.progress = value  # type: ignore[attr-defined]

    def judge(self, pairs: Sequence[Any], **options: Any) -> list[Judgment]:
        return self.built.judge(pairs, **options)  # type: ignore[attr-defined,no-any-return]

    def rerank_many(self, requests: Sequence[RequestLike], top_n: int | None = None) -> list[Ranking]:
        return self.built.rerank_many(requests, top_n)
