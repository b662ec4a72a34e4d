"""Two rerankers on the same candidates: the Rank1 paper's Table 7 experiment (a model against its
AWQ int4 version) as a measurement, usable for any pair of models.

    >>> base = measured_evaluation(lambda: Rank1("rank1-7b"), collection, run, top_k=100)
    >>> cand = measured_evaluation(lambda: Rank1("rank1-7b-awq"), collection, run, top_k=100)
    >>> comparison = compare(base, cand)          # quality, paired test, agreement, cost

Quality is the main measure of both runs with a paired test on its per-query values. Agreement is
how alike the two score the same documents: Spearman's rho of the scores per query (averaged) and
over all pairs pooled, the overlap of the two top-10 lists, and the score differences. Cost is
the weight files on disk, the peak memory while loading and reranking (each model runs in its
own process: its peak RSS above what torch and thinkrank take, or CUDA's peak allocation on a
GPU), the load time and the judgments computed per second.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from thinkrank.errors import EngineError, InvalidInputError, require
from thinkrank.evaluation.metrics import paired_test
from thinkrank.evaluation.runner import Evaluation, evaluate
from thinkrank.types import Ranking

TOP = 10


@dataclass(frozen=True)
class Cost:
    """What running one reranker took. ``per_second`` is None when every judgment came from the cache."""

    model: str
    disk_bytes: int | None
    peak_memory_bytes: int
    memory: str  # "cpu rss" or "cuda"
    load_seconds: float
    rerank_seconds: float
    computed: int
    per_second: float | None


@dataclass(frozen=True)
class Agreement:
    """How alike two rerankers score the same candidates."""

    spearman_mean: float | None  # mean over queries of Spearman's rho of the two score lists
    spearman_pooled: float | None  # rho over all (query, document) pairs at once
    top10_overlap: float  # mean share of the top 10 that both put there
    mean_abs_diff: float
    max_abs_diff: float
    pairs: int


@dataclass
class Measured:
    """An evaluation with what it cost."""

    evaluation: Evaluation
    cost: Cost


def measured_evaluation(build: Callable[[], Any], collection: Any, run: Any, *, device: str = "cpu",
                        cache: str | Path | None = None, progress: Callable[[int, int], None] | None = None,
                        **evaluate_options: Any) -> Measured:
    """Build a reranker with ``build()`` (picklable: e.g. ``functools.partial(Rank1, model, ...)``)
    and :func:`~thinkrank.evaluation.runner.evaluate` it in a fresh process, so that its peak
    memory is its own: the process's peak RSS above what it held once torch and thinkrank were
    imported (on a GPU: CUDA's peak allocation). ``cache``: a judgment cache file.

    Raises:
        whatever building or evaluating raised in the child process.
    """
    import pickle
    import subprocess
    import sys
    import tempfile

    # A fresh interpreter rather than multiprocessing: a fork would share the parent's memory, and
    # a spawn re-runs the parent's __main__ (the CLI itself).
    with tempfile.TemporaryDirectory(prefix="thinkrank-compare-") as tmp:
        job, result = Path(tmp) / "job.pkl", Path(tmp) / "result.pkl"
        job.write_bytes(pickle.dumps((build, collection, run, device, str(cache) if cache else None,
                                      evaluate_options)))
        code = "from thinkrank.evaluation.compare import _child; _child()"
        with subprocess.Popen([sys.executable, "-c", code, str(job), str(result)], stdout=subprocess.PIPE,
                              text=True) as child:
            assert child.stdout is not None
            for line in child.stdout:
                if not line.startswith(_PROGRESS):
                    sys.stderr.write(line)
                elif progress is not None:
                    progress(*map(int, line[len(_PROGRESS):].split()))
        if not result.exists():
            raise EngineError(f"the evaluation process died (exit code {child.returncode}); see its output above")
        kind, payload = pickle.loads(result.read_bytes())
    if kind == "error":
        raise payload
    return payload


_PROGRESS = "thinkrank-progress "


def _child() -> None:
    """The child process: read the job, evaluate, write ("done", Measured) or ("error", exception)."""
    import pickle
    import sys

    job, out = Path(sys.argv[1]), Path(sys.argv[2])
    build, collection, run, device, cache_path, options = pickle.loads(job.read_bytes())

    def progress(done: int, total: int) -> None:
        print(f"{_PROGRESS}{done} {total}", flush=True)

    try:
        outcome: tuple[str, Any] = ("done", _measure(build, collection, run, device, cache_path, options, progress))
    except Exception as exc:  # noqa: BLE001 - every failure goes back to the parent
        outcome = ("error", exc)
    try:
        out.write_bytes(pickle.dumps(outcome))
    except Exception as exc:  # an exception that does not pickle
        out.write_bytes(pickle.dumps(("error", RuntimeError(f"{type(exc).__name__}: {exc}"))))


def _measure(build: Callable[[], Any], collection: Any, run: Any, device: str, cache_path: str | None,
             options: dict[str, Any], progress: Callable[[int, int], None]) -> Measured:
    import resource

    import torch

    from thinkrank.cache import JudgmentCache

    base = _rss()
    on_gpu = device.startswith("cuda")
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    reranker = build()
    loaded = time.perf_counter() - start
    cache = JudgmentCache(cache_path) if cache_path else None
    try:
        result = evaluate(collection, run, reranker=reranker, cache=cache,
                          progress=progress, **options)
    finally:
        if cache is not None:
            cache.close()
    if on_gpu:
        torch.cuda.synchronize()
        peak, kind = torch.cuda.max_memory_allocated(), "cuda"
    else:
        peak, kind = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base, "cpu rss"
    model = str((result.settings or {}).get("model", "?"))
    computed = result.use.computed
    cost = Cost(model=model, disk_bytes=weights_size(model), peak_memory_bytes=peak, memory=kind,
                load_seconds=round(loaded, 2), rerank_seconds=round(result.seconds, 2), computed=computed,
                per_second=round(computed / result.seconds, 3) if computed and result.seconds > 0 else None)
    return Measured(result, cost)


def _rss() -> int:
    # /proc/self/statm: size and resident pages; Linux only, as ru_maxrss in kilobytes is.
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def weights_size(model: str | Path) -> int | None:
    """Bytes of the weight files (``.safetensors``, ``.bin``, ``.gguf``) of a local model; None otherwise."""
    path = Path(model)
    if path.is_file():
        return path.stat().st_size
    if not path.is_dir():
        return None
    return sum(f.stat().st_size for f in path.iterdir() if f.suffix in (".safetensors", ".bin", ".gguf"))


def agreement(a: dict[str, Ranking], b: dict[str, Ranking]) -> Agreement:
    """Score agreement of two rerankers over the same queries and candidates.

    Raises:
        InvalidInputError: the two ranked different queries or different documents.
    """
    stats = require("scipy.stats", "eval")
    if set(a) != set(b):
        raise InvalidInputError("the two rerankers ranked different queries; compare them on the same candidates")
    rhos, overlaps, xs, ys = [], [], [], []
    for qid in a:
        sa, sb = {j.doc_id: j.score for j in a[qid]}, {j.doc_id: j.score for j in b[qid]}
        if set(sa) != set(sb):
            raise InvalidInputError(f"query {qid!r}: the two rerankers ranked different documents")
        docs = sorted(sa)
        xa, xb = [sa[d] for d in docs], [sb[d] for d in docs]
        xs += xa
        ys += xb
        if len(docs) >= 2 and len(set(xa)) > 1 and len(set(xb)) > 1:
            rhos.append(float(stats.spearmanr(xa, xb).statistic))
        k = min(TOP, len(docs))
        overlaps.append(len({j.doc_id for j in a[qid].top(k)} & {j.doc_id for j in b[qid].top(k)}) / k if k else 1.0)
    diffs = [abs(x - y) for x, y in zip(xs, ys)]
    pooled = float(stats.spearmanr(xs, ys).statistic) if len(set(xs)) > 1 and len(set(ys)) > 1 else None
    return Agreement(
        spearman_mean=round(sum(rhos) / len(rhos), 4) if rhos else None,
        spearman_pooled=round(pooled, 4) if pooled is not None else None,
        top10_overlap=round(sum(overlaps) / len(overlaps), 4) if overlaps else 1.0,
        mean_abs_diff=round(sum(diffs) / len(diffs), 5) if diffs else 0.0,
        max_abs_diff=round(max(diffs), 5) if diffs else 0.0, pairs=len(diffs),
    )


def compare(base: Measured, cand: Measured, measure: str | None = None) -> dict[str, Any]:
    """Everything the comparison reports, as plain data (``comparison.json``, the report's table).

    Raises:
        InvalidInputError: the two evaluations are not on the same queries, or have no judgments.
    """
    eb, ec = base.evaluation, cand.evaluation
    if eb.reranked_metrics is None or ec.reranked_metrics is None:
        raise InvalidInputError("comparing two rerankers needs a collection with relevance judgments (qrels)")
    measure = measure or eb.reranked_metrics.measures[0]
    test = paired_test(eb.reranked_metrics, ec.reranked_metrics, measure) if len(eb.qids) >= 2 else None
    return {
        "measure": measure,
        "queries": len(eb.qids),
        "top_k": eb.top_k,
        "first_stage": eb.first_metrics.aggregate.get(measure) if eb.first_metrics else None,
        "baseline": {"model": base.cost.model, measure: eb.reranked_metrics.aggregate[measure], **asdict(base.cost)},
        "candidate": {"model": cand.cost.model, measure: ec.reranked_metrics.aggregate[measure], **asdict(cand.cost)},
        "difference": ec.reranked_metrics.aggregate[measure] - eb.reranked_metrics.aggregate[measure],
        "paired_test": asdict(test) if test else None,
        "agreement": asdict(agreement(eb.rankings, ec.rankings)),
    }
