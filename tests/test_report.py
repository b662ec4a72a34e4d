"""report.html in a real headless Chromium: it loads with no console message (no error, no
blocked request, its own script allowed by hash), shows every reasoning chain as text, keeps
hostile model output inert, marks unjudged documents apart and needs nothing from outside.

Chromium is optional for a user's install: without it the tests that drive it skip and say how to
install it. CI installs it (.ci/apt-packages.txt, THINKRANK_SYSTEM_PACKAGES=required) and sets
THINKRANK_REQUIRE_CHROMIUM=1, which makes its absence a failure there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from thinkrank.cache import JudgmentCache
from thinkrank.datasets import load_collection
from thinkrank.evaluation.report import render_report, write_report
from thinkrank.evaluation.runner import evaluate
from thinkrank.rerankers.base import Reranker, as_request
from thinkrank.rerankers.pointwise import Pair
from thinkrank.types import Judgment, Ranking, as_documents

HOSTILE = (
    "Step 1. <script>document.documentElement.setAttribute('data-pwned', 'script')</script>\n"
    "<img src=x onerror=\"document.documentElement.setAttribute('data-pwned', 'img')\">"
    "</pre></details></li></ol><b>not bold</b> & \"quoted\""
)
LONG = "A long passage about cats. " * 40
CORPUS = [
    {"_id": "d1", "title": "Cats <b>& kittens</b>", "text": "Cats are small domesticated carnivorous mammals."},
    {"_id": "d2", "text": "The stock market fell today after the tariff news."},
    {"_id": "d3", "text": LONG},
    {"_id": "d4", "text": "Dogs are loyal companions that bark."},
]
QRELS = "q1 0 d1 2\nq1 0 d2 0\nq2 0 d4 3\nq2 0 d2 1\n"  # d3 is in no qrels: unjudged
RUN = "".join(f"{q} Q0 {d} {r} {10 - r} bm25\n" for q, docs in (("q1", "d2 d3 d1"), ("q2", "d4 d2 d1"))
              for r, d in enumerate(docs.split(), 1))
CHAINS = {("q1", "d1"): HOSTILE, ("q1", "d2"): "Stocks are not cats.", ("q1", "d3"): "Long, but about cats.",
          ("q2", "d4"): "Dogs bark.", ("q2", "d2"): "Markets, no dogs.", ("q2", "d1"): ""}
SCORES = {"d1": 0.9, "d2": 0.1, "d3": 0.6, "d4": 0.8}


class Scripted(Reranker):
    """A reranker whose verdicts are written here, so the page can be checked against them."""

    kind = "pair"
    settings = {"mode": "pointwise", "model": "scripted/model", "engine": "none", "reasoning": True, "think_budget": 64}

    def judge(self, pairs, *, on_judged=None, seed_offsets=None):
        qid = {"cats": "q1", "dogs": "q2"}
        return [Judgment(p.document.id, p.index, SCORES[p.document.id], CHAINS[qid[p.query], p.document.id],
                         "true" if SCORES[p.document.id] > 0.5 else "false", reasoning_tokens=7,
                         forced=p.document.id == "d3", stop_reason="eos" if p.document.id == "d3" else "stop")
                for p in pairs]

    def rerank_many(self, requests, top_n=None):
        reqs = [as_request(r, i) for i, r in enumerate(requests)]
        return [Ranking(r.query, self.judge([Pair(r.query, d, i) for i, d in enumerate(as_documents(r.documents))]),
                        r.query_id) for r in reqs]


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in CORPUS))
    (root / "queries.jsonl").write_text('{"_id": "q1", "text": "cats"}\n'
                                        '{"_id": "q2", "text": "dogs", "instruction": "Only <i>pets</i>."}\n')
    (root / "qrels.trec").write_text(QRELS)
    (root / "runs").mkdir()
    (root / "runs" / "bm25.trec").write_text(RUN)
    return load_collection(root)


@pytest.fixture(scope="module")
def report(collection, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    with JudgmentCache(out / "cache.sqlite") as cache:
        result = evaluate(collection, collection.run("bm25"), top_k=3, reranker=Scripted(), cache=cache, permutations=0)
    return write_report(result, out / "report.html")


# ---- the browser harness ------------------------------------------------------------------------
def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    message = "Chromium is needed to test report.html in a browser: apt-get install chromium"
    if os.environ.get("THINKRANK_REQUIRE_CHROMIUM"):
        pytest.fail(message + " (THINKRANK_REQUIRE_CHROMIUM is set, as in CI)")
    pytest.skip(message + " (optional outside CI)")


def browse(page: Path, profile: Path, *flags: str, fragment: str = "") -> tuple[str, list[str]]:
    """Load ``page`` headless; returns the DOM after load and every console line it printed."""
    # --dump-dom makes headless Chromium print the DOM once loaded and exit; a screenshot run exits by itself.
    dump = [] if any(f.startswith("--screenshot") for f in flags) else ["--dump-dom"]
    proc = subprocess.run(
        [chromium(), "--headless", *dump, "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *flags, page.as_uri() + fragment],
        capture_output=True, text=True, timeout=120,
    )
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    return proc.stdout, console


class Elements(HTMLParser):
    """Tags with their attributes, and the text inside elements of chosen classes."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.doc_heads: list[dict[str, str]] = []  # per document: class -> text of its head spans
        self._span: str | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        classes = (attrs.get("class") or "").split()
        if "dochead" in classes:
            self.doc_heads.append({})
        elif tag == "span" and self.doc_heads and classes:
            self._span = " ".join(classes)

    def handle_endtag(self, tag):
        if tag == "span":
            self._span = None

    def handle_data(self, data):
        if self._span is not None:
            self.doc_heads[-1][self._span] = self.doc_heads[-1].get(self._span, "") + data


def test_the_harness_sees_script_errors_and_blocked_requests(tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><head><meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none';"
                   " script-src 'unsafe-inline'\"></head><body><img src=\"https://example.com/x.png\">"
                   "<script>console.error('boom'); notDefined();</script></body></html>")
    dom, console = browse(bad, tmp_path / "profile")
    text = "\n".join(console)
    assert "boom" in text and "Uncaught ReferenceError" in text and "Content Security Policy" in text
    assert "<body>" in dom


# ---- the report ---------------------------------------------------------------------------------
def test_report_loads_with_no_console_message_and_its_script_runs(report, tmp_path):
    dom, console = browse(report, tmp_path / "profile")
    assert console == []
    assert 'data-ready="1"' in dom.split(">", 2)[1]  # set on <html> by the report's script, last thing it does


def test_every_chain_is_in_the_page_as_text_and_hostile_markup_stays_inert(report, tmp_path):
    dom, console = browse(report, tmp_path / "profile")
    assert console == []  # an injected script would also show up here, refused by the page's policy
    assert "data-pwned" not in dom.split("<body", 1)[0]
    page = Elements(dom)
    assert [t for t, _ in page.tags].count("script") == 1 and "img" not in [t for t, _ in page.tags]
    assert "b" not in [t for t, _ in page.tags] and "i" not in [t for t, _ in page.tags]
    for chain in (c for c in CHAINS.values() if c):
        escaped = chain.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        assert escaped in dom  # Chromium serialises text nodes with &, <, > escaped
    assert "Cats &lt;b&gt;&amp; kittens&lt;/b&gt;" in dom and "Only &lt;i&gt;pets&lt;/i&gt;." in dom
    assert dom.count("No reasoning chain") == 1  # q2/d1 has an empty chain


def test_a_forced_chain_is_labelled_by_what_ended_it(report):
    from thinkrank.evaluation.report import DocRow

    html = report.read_text()
    # d3's chain ended with end-of-sequence (forced, not cut): the label says so, never "cut at the budget"
    assert html.count("ended by end-of-sequence, closed by the reranker") == 1 and "cut at the budget" not in html

    def row(flags, stop_reason):
        return DocRow(1, 1, "d", None, "t", 0.5, None, reasoning="chain", flags=flags, stop_reason=stop_reason)

    assert row(["forced"], "length").ending == "cut at the budget"
    assert row(["forced"], None).ending == "closed by the reranker (stop reason not recorded)"
    assert row([], "stop").ending is None


def test_each_document_shows_its_rank_score_label_and_movement(report):
    heads = Elements(report.read_text()).doc_heads
    seen = {(h["docid"], h["rank"]): h for h in heads}
    # q1 reranked d1 (0.9) > d3 (0.6) > d2 (0.1); first stage was d2, d3, d1
    q1 = heads[:3]
    assert [h["docid"] for h in q1] == ["d1", "d3", "d2"]
    assert [h["rank"] for h in q1] == ["#1", "#2", "#3"]
    assert [h["move up"] if "move up" in h else h.get("move down", h.get("move same")) for h in q1] == ["▲2", "=", "▼2"]
    assert q1[0]["label g2"] == "2" and q1[1]["label unjudged"] == "unjudged" and q1[2]["label g0"] == "0"
    assert q1[0]["score"] == "0.9000" and q1[1]["flag"] == "forced"
    # q2: d1 (0.9, not judged for q2) > d4 (0.8, grade 3) > d2 (0.1, grade 1)
    assert seen[("d1", "#1")]["label unjudged"] == "unjudged"
    assert seen[("d4", "#2")]["label g3"] == "3" and seen[("d2", "#3")]["label g1"] == "1"


def test_metrics_and_per_query_deltas_match_the_evaluation(collection, report):
    html = report.read_text()
    # q1: first stage d2(0) d3(-) d1(2) -> nDCG@10 = (2/log2 4) / 2 = 0.5; reranked d1 first -> 1.0
    assert "0.5000" in html and "+0.5000" in html
    # q2 is unchanged at the top (d4, grade 3) and has d2 (grade 1) second in both
    assert html.index('href="#q-q1"') < html.index('href="#q-q2"')  # largest gain first


def test_report_is_self_contained(report):
    page = Elements(report.read_text())
    names = [t for t, _ in page.tags]
    assert "link" not in names and "iframe" not in names and "object" not in names
    for tag, attrs in page.tags:
        for name in ("src", "href", "action", "data"):
            value = attrs.get(name)
            assert value is None or value.startswith("#"), (tag, name, value)
    csp = next(a["content"] for t, a in page.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy")
    assert "default-src 'none'" in csp and "unsafe-inline" not in csp.split("script-src")[1]


def test_a_link_to_a_query_opens_its_section(report, tmp_path):
    dom, console = browse(report, tmp_path / "profile", fragment="#q-q2")
    assert console == []
    opened = [a.get("id") for t, a in Elements(dom).tags if t == "details" and "open" in a]
    assert opened == ["q-q2"]


def test_screenshot_renders(report, tmp_path):
    shot = tmp_path / "report.png"
    _, console = browse(report, tmp_path / "profile", "--hide-scrollbars", "--window-size=1280,1600",
                        f"--screenshot={shot}")
    data = shot.read_bytes()
    assert console == [] and data[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(data[16:20], "big") == 1280 and len(data) > 20_000  # a real page, not a blank one


def test_a_collection_without_judgments_or_reranker_still_gets_a_page(collection):
    bare = type(collection)(collection.corpus, collection.queries, {}, collection.runs, name="bare")
    html = render_report(evaluate(bare, bare.run("bm25"), top_k=2))
    assert "no relevance judgments" in html and html.count('class="doc"') == 4 and "unjudged" in html


@pytest.mark.slow
def test_report_of_a_real_model_run_shows_its_chains(data_dir, smollm2_engine, tmp_path):
    from thinkrank.rerankers.pointwise import Rank1

    dl19 = load_collection(data_dir / "dl19")
    rank1 = Rank1(engine=smollm2_engine, think_budget=12)
    with JudgmentCache(tmp_path / "cache.sqlite") as cache:
        result = evaluate(dl19, dl19.run("bm25"), top_k=2, reranker=rank1, cache=cache, qids=["19335", "47923"],
                          permutations=0)
    page = write_report(result, tmp_path / "report.html")
    dom, console = browse(page, tmp_path / "profile")
    assert console == []
    chains = [j.reasoning for r in result.rankings.values() for j in r if j.reasoning.strip()]
    assert chains, "SmolLM2 wrote no chain at all"
    for chain in chains:
        assert chain.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") in dom
