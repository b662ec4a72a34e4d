"""Documents in, rankings out: validation, ordering, lookups and exports."""

import json

import pytest

from thinkrank.errors import InvalidInputError
from thinkrank.types import Document, Judgment, Ranking, as_documents, check_query


def test_strings_get_their_position_as_id_and_mappings_keep_theirs():
    docs = as_documents(["a", {"id": 7, "text": "b", "title": "T"}, {"_id": "x", "text": "c"}, Document("d", "e")])
    assert [d.id for d in docs] == ["0", "7", "x", "d"]
    assert docs[1].passage == "T b"
    assert docs[0].passage == "a"


@pytest.mark.parametrize(
    ("docs", "message"),
    [
        (["ok", ""], "document 1 .*empty text"),
        (["ok", "   \n"], "document 1 .*empty text"),
        (["ok", 42], "document 1 is a int"),
        ([{"id": "a"}], "document 0 has no 'text'"),
        ([{"id": "a", "text": None}], "text must be a string"),
        ([{"id": "a", "text": "x"}, {"id": "a", "text": "y"}], "documents 0 and 1 share the id 'a'"),
        ("just a string", "must be a list"),
        (["ok", {"id": [1, 2], "text": "x"}], r"document 1: an id must be a string or an integer, got list \[1, 2\]"),
        ([{"id": 1.5, "text": "x"}], "document 0: an id must be a string or an integer, got float"),
        ([{"id": True, "text": "x"}], "document 0: an id must be a string or an integer, got bool"),
    ],
)
def test_bad_documents_are_rejected_with_a_clear_message(docs, message):
    with pytest.raises(InvalidInputError, match=message):
        as_documents(docs)


@pytest.mark.parametrize("query", ["", "   ", None, 3])
def test_empty_or_non_string_query_is_rejected(query):
    with pytest.raises(InvalidInputError, match="query"):
        check_query(query)


def _j(doc_id, index, score):
    return Judgment(doc_id=doc_id, index=index, score=score)


def test_ranking_sorts_by_score_and_keeps_input_order_on_ties():
    ranking = Ranking("q", [_j("a", 0, 0.2), _j("b", 1, 0.9), _j("c", 2, 0.2), _j("d", 3, 0.5)])
    assert ranking.doc_ids == ["b", "d", "a", "c"]
    assert [j.doc_id for j in ranking.top(2)] == ["b", "d"]
    assert ranking["c"].index == 2 and ranking[0].doc_id == "b"
    assert "a" in ranking and "zz" not in ranking
    with pytest.raises(KeyError, match="no document with id 'zz'"):
        ranking["zz"]


def test_trec_lines_and_json_export():
    ranking = Ranking("q", [_j("a", 0, 0.25), _j("b", 1, 0.75)], query_id="q1")
    assert ranking.to_trec(tag="run") == ["q1 Q0 b 1 0.75 run", "q1 Q0 a 2 0.25 run"]  # full precision, shortest form
    data = json.loads(ranking.to_json())
    assert data["query_id"] == "q1"
    assert [(r["rank"], r["doc_id"], r["score"]) for r in data["results"]] == [(1, "b", 0.75), (2, "a", 0.25)]


def test_truncate_keeps_the_best():
    ranking = Ranking("q", [_j("a", 0, 0.1), _j("b", 1, 0.9)]).truncate(1)
    assert ranking.doc_ids == ["b"]
    with pytest.raises(InvalidInputError):
        ranking.truncate(-1)
