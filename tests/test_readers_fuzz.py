"""Fuzzing the file readers with hypothesis: whatever bytes a file holds, a reader returns a
result or raises InvalidInputError naming the file; and what the writers write reads back equal."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from thinkrank.cli.inputs import read_docs, read_queries
from thinkrank.datasets.collection import read_corpus
from thinkrank.datasets.collection import read_queries as read_collection_queries
from thinkrank.datasets.qrels import read_beir_qrels, read_trec_qrels, write_trec_qrels
from thinkrank.datasets.rank_llm import read_rank_llm
from thinkrank.datasets.runs import Run, read_json_run, read_trec_run, write_json_run, write_trec_run
from thinkrank.errors import InvalidInputError

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Lines that look almost right are where readers break: fields of the right count with odd
# numbers, tabs, unicode spaces, JSON fragments, NUL bytes and invalid UTF-8.
TOKENS = st.sampled_from([
    "q1", "Q0", "d1", "1", "0", "-1", "2.5", "1e999", "-1e999", "nan", "NaN", "inf", "-inf", "1.", ".5", "0x10", "1e999.0", "nan.5", "inf.0", "NaN,", "9" * 400 + ".",
    "tag", "\t", " ", "\u00a0", "\u2028", "\u3000", "{", "}", "[", "]", '"', ":", ",", "null", "true", '"text"',
    '"id"', '"qid"', '"query"', '"candidates"', "\x00", "é", "\ud800",
])
LINE = st.lists(TOKENS, max_size=8).map(" ".join)
TEXT = st.lists(LINE, max_size=6).map("\n".join)
RAW = st.one_of(
    TEXT.map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.binary(max_size=200),
)

READERS = {
    "trec run": (read_trec_run, "run.trec"),
    "trec run gz": (read_trec_run, "run.trec.gz"),
    "json run": (read_json_run, "run.json"),
    "trec qrels": (read_trec_qrels, "qrels.trec"),
    "beir qrels": (read_beir_qrels, "test.tsv"),
    "rank_llm jsonl": (read_rank_llm, "requests.jsonl"),
    "corpus jsonl": (read_corpus, "corpus.jsonl"),
    "collection queries": (read_collection_queries, "queries.jsonl"),
    "cli docs": (lambda p: read_docs(Path(p)), "docs.jsonl"),
    "cli docs plain": (lambda p: read_docs(Path(p)), "docs.txt"),
    "cli queries": (lambda p: read_queries(Path(p)), "queries.jsonl"),
}


@pytest.mark.parametrize("name", READERS)
@FUZZ
@given(data=RAW)
def test_a_reader_returns_or_names_the_file_never_a_foreign_error(tmp_path, name, data):
    reader, filename = READERS[name]
    path = tmp_path / filename
    path.write_bytes(gzip.compress(data) if filename.endswith(".gz") else data)
    try:
        reader(path)
    except InvalidInputError as exc:
        assert str(path) in str(exc) or path.name in str(exc)


@pytest.mark.parametrize("text", ['{"q1": {"d1": NaN}}', '{"q1": {"d1": "1"}}', '{"q1": [1]}', '[]'])
def test_a_json_run_with_a_score_that_is_not_a_number_is_refused(tmp_path, text):
    (tmp_path / "r.json").write_text(text)
    with pytest.raises(InvalidInputError, match="r.json"):
        read_json_run(tmp_path / "r.json")


def test_a_damaged_gzip_file_is_reported_with_its_name(tmp_path):
    path = tmp_path / "run.trec.gz"
    path.write_bytes(gzip.compress(b"q1 Q0 d1 1 2.0 t\n" * 1000)[:60])
    with pytest.raises(InvalidInputError, match="run.trec.gz"):
        read_trec_run(path)


IDS = st.text(st.characters(blacklist_categories=("Cs", "Zs", "Zl", "Zp", "Cc")), min_size=1, max_size=8)
SCORES = st.floats(allow_nan=False, allow_infinity=False, width=32, min_value=-1e6, max_value=1e6)


@FUZZ
@given(rankings=st.dictionaries(IDS, st.dictionaries(IDS, SCORES, min_size=1, max_size=5), min_size=1, max_size=4))
def test_runs_written_as_trec_and_json_read_back_equal(tmp_path, rankings):
    run = Run({q: list(d.items()) for q, d in rankings.items()}, "t")
    back = read_trec_run(write_trec_run(run, tmp_path / "r.trec"))
    for qid, docs in rankings.items():
        # TREC keeps 6 decimals: compare as the file does, in the writer's rank order.
        assert [d for d, _ in back[qid]] == [d for d, _ in run[qid]]
        assert all(math.isclose(s, round(docs[d], 6), abs_tol=1e-6) for d, s in back[qid])
    assert read_json_run(write_json_run(run, tmp_path / "r.json")).to_dict() == run.to_dict()


@FUZZ
@given(qrels=st.dictionaries(IDS, st.dictionaries(IDS, st.integers(-1, 4), min_size=1, max_size=5), min_size=1,
                             max_size=4))
def test_qrels_written_as_trec_read_back_equal(tmp_path, qrels):
    assert read_trec_qrels(write_trec_qrels(qrels, tmp_path / "q.trec")) == qrels
