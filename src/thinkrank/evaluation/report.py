"""``report.html``: one self-contained page to read an evaluation by.

It shows the metrics of the reranked run against the first stage (with paired tests), the
per-query change of the main measure (a chart and a sortable table), and for each query the
reranked list: scores, movement, relevance labels from the qrels ("unjudged" set apart) and
each document's reasoning chain in a ``<details>``.

Everything is inline (CSS, JS, SVG) and the page forbids itself any outside request with a
Content-Security-Policy. Model output is untrusted: Jinja2 escapes every text, and the policy
lets only the report's own script run (by its hash), so injected markup stays inert text.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from thinkrank.errors import require
from thinkrank.evaluation.report_calibration import calibration_figures
from thinkrank.io import write_text_atomic

if TYPE_CHECKING:
    from thinkrank.evaluation.runner import Evaluation
    from thinkrank.types import Ranking

PASSAGE_CHARS = 600  # longer passages show this much, the rest behind "full passage"


@dataclass
class DocRow:
    rank: int
    first_rank: int | None
    doc_id: str
    title: str | None
    text: str
    score: float
    label: int | None  # None: not in the qrels
    answer: str | None = None
    reasoning: str = ""
    reasoning_tokens: int = 0
    flags: list[str] = field(default_factory=list)
    stop_reason: str | None = None

    @property
    def move(self) -> int:
        return 0 if self.first_rank is None else self.first_rank - self.rank

    @property
    def ending(self) -> str | None:
        """How a forced chain ended, as the report words it; None for a chain the model closed."""
        if "forced" not in self.flags:
            return None
        return FORCED_ENDINGS.get(self.stop_reason or "", "closed by the reranker (stop reason not recorded)")


# A forced chain did not close by itself; the label follows what ended it.
FORCED_ENDINGS = {"length": "cut at the budget", "eos": "ended by end-of-sequence, closed by the reranker"}


@dataclass
class QueryView:
    qid: str
    text: str
    instruction: str | None
    first: float | None
    reranked: float | None
    relevant: int
    found_first: int
    rows: list[DocRow]
    windows: list[dict[str, Any]] = field(default_factory=list)
    comparisons: list[dict[str, Any]] = field(default_factory=list)  # setwise calls, candidates as doc ids

    @property
    def delta(self) -> float | None:
        return None if self.first is None or self.reranked is None else self.reranked - self.first


def write_report(result: Evaluation, path: str | Path) -> Path:
    """Render ``result`` as a self-contained HTML page at ``path``; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, render_report(result))
    return path


def render_report(result: Evaluation) -> str:
    """The report page of ``result`` as an HTML string."""
    jinja2 = require("jinja2", "eval")
    folder = resources.files("thinkrank.evaluation")
    script = folder.joinpath("report.js").read_text(encoding="utf-8")
    env = jinja2.Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    env.filters.update(num=_num, signed=_signed, pvalue=_pvalue, mib=_mib)
    template = env.from_string(folder.joinpath("report.html.j2").read_text(encoding="utf-8"))
    main = result.measures[0] if result.first_metrics is None else result.first_metrics.measures[0]
    queries = [_query_view(result, q, main) for q in result.qids]
    return template.render(
        r=result, main=main, queries=queries, summary=_summary(result), chart=_chart(queries), facts=_facts(result),
        calib=calibration_figures(result),
        reasoning_off=bool(result.settings and result.settings.get("reasoning") is False),
        settings=json.dumps(result.settings, indent=2, ensure_ascii=False) if result.settings else None,
        style=folder.joinpath("report.css").read_text(encoding="utf-8"), script=script,
        script_hash=base64.b64encode(hashlib.sha256(script.encode()).digest()).decode(),
        passage_chars=PASSAGE_CHARS, comparison=getattr(result, "comparison", None), by_delta=sorted(queries, key=lambda v: (-(v.delta or 0.0), v.qid)),
    )


def _facts(result: Evaluation) -> list[tuple[str, str]]:
    """The header's name/value pairs: what was evaluated, with what, and how much work it took."""
    facts = [("Queries", str(len(result.qids))), ("Candidates", f"top {result.top_k} of {result.run_name}")]
    s = result.settings
    if s is not None:
        how = str(s.get("mode", "reranker"))
        if "reasoning" in s:
            how += f", reasoning on, budget {s.get('think_budget')} tokens" if s["reasoning"] else ", reasoning off"
        elif "window" in s:
            how += f", window {s['window']}, stride {s.get('stride')}, {s.get('max_tokens')} tokens per window"
        elif "method" in s:
            how += f", {s['method']} to the top {s.get('k')}, sets of {s.get('num_child', 0) + 1}, " \
                   f"{s.get('max_tokens')} tokens per comparison"
        if s.get("cascade"):
            from thinkrank.evaluation.runner import cascade_counts

            c, rule = cascade_counts(result), s["cascade"]
            chosen = " and ".join(x for x in (f"top {rule.get('top_m')}" if rule.get("top_m") else "",
                                              "band {}:{}".format(*rule["band"]) if rule.get("band") else "") if x)
            spent = (f"{chosen}: {c['chains']} of {c['candidates']} candidates reasoned, {c['chain_tokens']} chain "
                     f"tokens, ~{c['tokens_saved']} saved")
            facts.append(("Cascade", spent))
        windows = sum(len(r.windows) for r in result.rankings.values())
        if windows:
            unparsed = sum(r.unparsed_windows for r in result.rankings.values())
            facts.append(("Windows without an ordering", f"{unparsed} of {windows} (kept their previous order)"))
        comparisons = sum(len(r.comparisons) for r in result.rankings.values())
        if comparisons:
            unexpected = sum(r.unexpected_comparisons for r in result.rankings.values())
            facts.append(("Unexpected comparison answers", f"{unexpected} of {comparisons} (kept the parent)"))
        facts += [("Model", str(s.get("model", "?"))), ("Reranker", how), ("Engine", str(s.get("engine", "?"))),
                  ("Judgments", f"{result.use.computed} computed, {result.use.cached} from cache"),
                  ("Reranking time", f"{result.seconds:.1f} s")]
    return facts + [("Generated", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))]


def _summary(result: Evaluation) -> list[dict[str, Any]]:
    if result.first_metrics is None:
        return []
    rows = []
    for m in result.first_metrics.measures:
        after = result.reranked_metrics.aggregate[m] if result.reranked_metrics else None
        test = result.tests.get(m)
        rows.append({"measure": m, "first": result.first_metrics.aggregate[m], "reranked": after,
                     "delta": None if after is None else after - result.first_metrics.aggregate[m],
                     "p": test.p_value if test else None, "p_perm": test.permutation_p_value if test else None})
    return rows


def _query_view(result: Evaluation, qid: str, main: str) -> QueryView:
    labels = result.qrels.get(qid, {})
    first_ids = result.first_stage.doc_ids(qid)
    first_rank = {d: i for i, d in enumerate(first_ids, 1)}
    ranking = result.rankings.get(qid)
    if ranking is not None:
        rows = [
            DocRow(rank, first_rank.get(j.doc_id), j.doc_id, result.documents[j.doc_id].title,
                   result.documents[j.doc_id].text, j.score, labels.get(j.doc_id), j.answer, j.reasoning,
                   j.reasoning_tokens, [f for f in ("forced", "truncated") if getattr(j, f)], j.stop_reason)
            for rank, j in enumerate(ranking, 1)
        ]
    else:
        rows = [
            DocRow(rank, rank, d, result.documents[d].title, result.documents[d].text, s, labels.get(d))
            for rank, (d, s) in enumerate(result.first_stage[qid], 1)
        ]

    def value(metrics: Any) -> float | None:
        return None if metrics is None or qid not in metrics.per_query else metrics.per_query[qid][main]

    return QueryView(
        qid, result.queries[qid], result.instructions.get(qid), value(result.first_metrics),
        value(result.reranked_metrics), sum(g > 0 for g in labels.values()),
        sum(labels.get(d, 0) > 0 for d in first_ids), rows,
        [w.to_dict() for w in ranking.windows] if ranking is not None else [],
        _comparison_rows(ranking) if ranking is not None else [],
    )


def _comparison_rows(ranking: Ranking) -> list[dict[str, Any]]:
    """A setwise ranking's comparisons with the candidates named by doc id, in the order the
    model saw them, the parent (kept on an unexpected answer) first in ``parent``."""
    ids = {j.index: j.doc_id for j in ranking}
    return [{**c.to_dict(), "shown_ids": [ids[i] for i in c.shown], "parent": ids[c.indices[0]],
             "chosen_id": None if c.chosen is None else ids[c.chosen]} for c in ranking.comparisons]


def _chart(queries: list[QueryView]) -> dict[str, Any] | None:
    """Bars of the per-query change, largest gain first, as SVG coordinates (viewBox units)."""
    deltas = sorted(((v.delta, v.qid) for v in queries if v.delta is not None), key=lambda x: (-x[0], x[1]))
    if not deltas:
        return None
    step, height = 12, 160
    scale = max(abs(d) for d, _ in deltas) or 1.0
    mid = height / 2
    bars = []
    for i, (d, qid) in enumerate(deltas):
        h = abs(d) / scale * (mid - 4)
        bars.append({"x": i * step + 2, "y": mid - h if d > 0 else mid, "h": max(h, 0.6), "w": step - 3,
                     "cls": "up" if d > 0 else "down" if d < 0 else "same", "qid": qid, "delta": d})
    # At least 80 bars wide, so a handful of queries gives slim bars rather than slabs.
    return {"bars": bars, "width": max(len(deltas), 80) * step + 4, "height": height, "mid": mid, "scale": scale}


def _num(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _signed(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:+.{digits}f}"


def _mib(value: int | None) -> str:
    return "–" if value is None else f"{value / 2**20:,.1f} MiB"


def _pvalue(value: float | None) -> str:
    if value is None:
        return "–"
    return "<0.001" if value < 0.001 else f"{value:.3f}"
