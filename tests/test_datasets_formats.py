"""Collection folders and run/qrels files: real data in, the same data out, clear errors on bad lines."""

from __future__ import annotations

import json

import pytest

from thinkrank.datasets import (
    Collection, Run, load_collection, read_qrels, read_rank_llm, read_run, read_trec_run,
    requests_from_run, write_json_run, write_rank_llm, write_trec_qrels, write_trec_run,
)
from thinkrank.errors import InvalidInputError
from thinkrank.types import Document


def test_dl19_folder_loads_with_its_documented_sizes_and_runs(data_dir):
    dl19 = load_collection(data_dir / "dl19")
    # The figures of shared/data/README.md: 8,056 passages, 43 judged queries, 9,260 judgments.
    assert (len(dl19.corpus), len(dl19.queries), sum(len(d) for d in dl19.qrels.values())) == (8056, 43, 9260)
    assert sorted(dl19.runs) == ["bm25", "bm25_rm3", "splade_pp_ed"]
    bm25 = dl19.run("bm25")
    assert len(bm25) == 43 and all(len(bm25[q]) == 100 for q in bm25)
    first = (data_dir / "dl19" / "runs" / "bm25.trec").read_text().split("\n", 1)[0].split()
    assert bm25[first[0]][0] == (first[2], float(first[4]))  # the file's rank 1 is the run's first
    assert dl19.candidates(bm25, first[0], 3)[0] == dl19.corpus[first[2]]


def test_split_subfolder_finds_the_corpus_in_its_parent(data_dir):
    train = load_collection(data_dir / "scifact" / "train")
    # README: 809 training claims, 919 judgments, the 5,183-abstract corpus of scifact/.
    assert (len(train.queries), sum(len(d) for d in train.qrels.values()), len(train.corpus)) == (809, 919, 5183)
    assert train.name == "scifact/train"
    doc = next(iter(train.corpus.values()))
    assert doc.title and doc.passage == f"{doc.title} {doc.text}"


def test_beir_folder_reads_the_split_tsv_and_keeps_instructions(tmp_path):
    (tmp_path / "qrels").mkdir()
    (tmp_path / "corpus.jsonl").write_text('{"_id": "d1", "title": "T", "text": "one"}\n{"_id": "d2", "text": "two"}\n')
    (tmp_path / "queries.jsonl").write_text(
        '{"_id": "q1", "text": "first"}\n{"_id": "q2", "text": "second", "instruction": "only recent"}\n')
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td2\t0\n")
    (tmp_path / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\nq2\td2\t1\n")
    test = load_collection(tmp_path)
    assert test.qrels == {"q1": {"d1": 2, "d2": 0}}
    assert list(test.judged().queries) == ["q1"] and test.instructions == {"q2": "only recent"}
    assert load_collection(tmp_path, split="dev").qrels == {"q2": {"d2": 1}}
    with pytest.raises(InvalidInputError, match=r"no qrels/train.tsv .*\['dev', 'test'\]"):
        load_collection(tmp_path, split="train")


def test_trec_run_round_trip_keeps_order_scores_and_tied_documents(tmp_path):
    src = tmp_path / "in.trec"
    src.write_text("q1 Q0 a 1 2.5 sys\nq1 Q0 c 2 1.0 sys\nq1 Q0 b 3 1.0 sys\nq2 Q0 z 1 -3 sys\n")
    run = read_trec_run(src)
    assert run.name == "sys" and run["q1"] == [("a", 2.5), ("c", 1.0), ("b", 1.0)]
    out = write_trec_run(run.top_k(2), tmp_path / "out" / "run.trec", tag="mine")
    assert out.read_text() == "q1 Q0 a 1 2.5 mine\nq1 Q0 c 2 1.0 mine\nq2 Q0 z 1 -3.0 mine\n"  # full precision


def test_run_sorts_by_score_and_drops_excluded_documents():
    run = Run({"q": [("low", 0.1), ("high", 0.9), ("mid", 0.5)]})
    assert run.doc_ids("q") == ["high", "mid", "low"]
    assert run.without({"q": {"mid"}}).doc_ids("q") == ["high", "low"]
    assert Run.from_scores(run.to_dict()).rankings == run.rankings


def test_json_run_and_trec_qrels_round_trip(tmp_path):
    run = Run({"1": [("d1", 3.0), ("d2", 1.5)], "2": [("d9", 0.25)]})
    path = write_json_run(run, tmp_path / "run.json")
    assert json.loads(path.read_text()) == {"1": {"d1": 3.0, "d2": 1.5}, "2": {"d9": 0.25}}
    assert read_run(path).rankings == run.rankings
    qrels = {"1": {"d1": 2, "d2": 0}}
    assert read_qrels(write_trec_qrels(qrels, tmp_path / "q.trec")) == qrels


def test_rank_llm_requests_round_trip_with_texts_and_titles(tmp_path):
    corpus = {"d1": Document("d1", "Cats purr.", "Cats"), "d2": Document("d2", "Stocks fell.")}
    run = Run({"q1": [("d2", 0.4), ("d1", 0.9)]})
    path = write_rank_llm(requests_from_run(run, {"q1": "cats"}, corpus), tmp_path / "req.jsonl")
    line = json.loads(path.read_text())
    # rank_llm's Request: {"query": {"text", "qid"}, "candidates": [{"docid", "score", "doc"}]}
    assert line["query"] == {"text": "cats", "qid": "q1"}
    assert line["candidates"][0] == {"docid": "d1", "score": 0.9, "doc": {"title": "Cats", "text": "Cats purr."}}
    back = read_rank_llm(path)
    assert back.run().rankings == run.rankings and back.corpus() == corpus and back.queries() == {"q1": "cats"}
    assert read_run(path).rankings == run.rankings


def test_rank_llm_reads_contents_and_integer_ids(tmp_path):
    path = tmp_path / "req.jsonl"
    path.write_text(json.dumps({"query": {"text": "q", "qid": 7},
                                "candidates": [{"docid": 11, "score": 2, "doc": {"contents": "body"}}]}) + "\n")
    req = read_rank_llm(path).requests[0]
    assert (req.qid, req.candidates[0].doc.id, req.candidates[0].doc.text) == ("7", "11", "body")


@pytest.mark.parametrize(("name", "content", "message"), [
    ("run.trec", "q1 Q0 a 1 2.0 sys\nq1 Q0 b 2 sys\n", r"run.trec:2: a TREC run line needs 6 fields"),
    ("run.trec", "q1 Q0 a 1 high sys\n", r"run.trec:1: score 'high' is not a number"),
    ("run.trec", "q1 Q0 a 1 2 s\n\nq1 Q0 a 2 1 s\n", r"run.trec:3: document 'a' is listed twice"),
    ("qrels.trec", "q1 0 d1 1\nq1 0 d2\n", r"qrels.trec:2: a TREC qrels line needs 4 fields"),
    ("qrels.trec", "q1 0 d1 yes\n", r"qrels.trec:1: relevance grade 'yes'"),
    ("req.jsonl", '{"query": {"text": "q", "qid": 1}, "candidates": []}\n{"query": "q"}\n', r"req.jsonl:2: expected \"query\""),
    ("req.jsonl", '{"query": {"text": "q", "qid": 1}, "candidates": [{"docid": 1, "doc": {}}]}\n',
     r"req.jsonl:1 candidate 0: \"doc\" needs a text field"),
    ("run.json", '{"q1": {"d1": "high"}}', r"run.json: query 'q1' document 'd1' has score 'high'"),
])
def test_malformed_files_name_the_file_and_line(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    reader = read_qrels if name.startswith("qrels") else read_run
    with pytest.raises(InvalidInputError, match=message):
        reader(path)


def test_malformed_collection_lines_name_the_file_and_line(tmp_path):
    (tmp_path / "queries.jsonl").write_text('{"_id": "q1", "text": "ok"}\n{"_id": "q2", "text": "bad"\n')
    (tmp_path / "corpus.jsonl").write_text('{"_id": "d1", "text": "x"}\n')
    with pytest.raises(InvalidInputError, match=r"queries.jsonl:2: not valid JSON"):
        load_collection(tmp_path)
    (tmp_path / "queries.jsonl").write_text('{"_id": "q1", "text": "ok"}\n')
    (tmp_path / "corpus.jsonl").write_text('{"_id": "d1", "text": "x"}\n{"title": "no id", "text": "y"}\n')
    with pytest.raises(InvalidInputError, match=r"corpus.jsonl:2: missing field '_id' or 'id'"):
        load_collection(tmp_path)
    (tmp_path / "corpus.jsonl").write_text('{"_id": "d1", "text": "x"}\n{"_id": "d1", "text": "y"}\n')
    with pytest.raises(InvalidInputError, match=r"corpus.jsonl:2: document id 'd1' appears twice"):
        load_collection(tmp_path)


def test_missing_folder_run_and_documents_have_clear_errors(tmp_path, data_dir):
    with pytest.raises(InvalidInputError, match="collection folder not found"):
        load_collection(tmp_path / "nope")
    (tmp_path / "queries.jsonl").write_text('{"_id": "q1", "text": "ok"}\n')
    with pytest.raises(InvalidInputError, match="no corpus.jsonl in"):
        load_collection(tmp_path)
    col = Collection({"d1": Document("d1", "x")}, {"q1": "ok"}, name="tiny")
    with pytest.raises(InvalidInputError, match=r"no run 'bm25'; runs: none"):
        col.run("bm25")
    with pytest.raises(InvalidInputError, match=r"document 'd7' is not in the corpus of 'tiny'"):
        col.documents(["d1", "d7"])
    with pytest.raises(InvalidInputError, match=r"file not found"):
        read_run(tmp_path / "absent.trec")
