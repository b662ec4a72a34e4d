"""Bad arguments to the library raise ThinkrankError subclasses that name the argument, before any
model work: the constructors are given a model that does not exist (offline), so a check that
came after loading would surface as a ModelLoadError instead."""

from __future__ import annotations

import math

import pytest

from thinkrank.errors import InvalidInputError, ModelLoadError, ThinkrankError

NEVER = "never-loaded/model"


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


RANK1_CASES = [
    ("think_budget", True), ("think_budget", 2.5), ("think_budget", "16"), ("think_budget", 0), ("think_budget", -1),
    ("seed", "abc"), ("seed", 1.5), ("temperature", math.nan), ("temperature", math.inf), ("temperature", -0.1),
    ("temperature", "0.5"), ("max_passage_tokens", 0), ("max_passage_tokens", "5"), ("reasoning", "yes"),
    ("reasoning", 1), ("prompt", 5), ("instruction", 3),
]


@pytest.mark.parametrize(("name", "value"), RANK1_CASES)
def test_rank1_refuses_a_bad_argument_by_name_before_loading(name, value):
    from thinkrank import Rank1

    with pytest.raises(InvalidInputError, match=name) as info:
        Rank1(NEVER, engine="transformers", **{name: value})
    assert isinstance(info.value, ThinkrankError) and not isinstance(info.value, ModelLoadError)


RANKK_CASES = [
    ("window", True), ("window", 1), ("stride", 0), ("depth", "3"), ("max_tokens", 0), ("temperature", math.nan),
    ("seed", "x"), ("max_passage_tokens", 0), ("prompt", 7),
]


@pytest.mark.parametrize(("name", "value"), RANKK_CASES)
def test_rankk_refuses_a_bad_argument_by_name_before_loading(name, value):
    from thinkrank import RankK

    with pytest.raises(InvalidInputError, match=name):
        RankK(NEVER, engine="transformers", **{name: value})


@pytest.mark.parametrize(("name", "value"), [("batch_size", 0), ("batch_size", -2), ("batch_size", "8"),
                                             ("max_batch_tokens", 0)])
def test_transformers_engine_refuses_a_bad_batch_before_loading(name, value):
    from thinkrank.engines.transformers import TransformersEngine

    with pytest.raises(InvalidInputError, match=name):
        TransformersEngine(NEVER, **{name: value})


@pytest.mark.parametrize("top_n", ["3", 0, -2, 2.5, True])
def test_a_bad_top_n_is_refused_before_any_judging(smollm2_engine, top_n):
    from thinkrank import Rank1

    calls = []
    reranker = Rank1(engine=smollm2_engine, reasoning=False, progress=lambda done, total: calls.append(done))
    with pytest.raises(InvalidInputError, match="top_n"):
        reranker.rerank("cats", ["Cats purr.", "Stocks fell."], top_n=top_n)
    assert calls == []  # nothing was judged


def test_ranking_truncate_names_top_n():
    from thinkrank.types import Judgment, Ranking

    ranking = Ranking("q", [Judgment("a", 0, 0.5)])
    with pytest.raises(InvalidInputError, match="top_n"):
        ranking.truncate("1")
    assert len(ranking.truncate(1)) == 1


@pytest.mark.parametrize(("docs", "message"), [
    (["ok", "bad \udc80 text"], "document 1 .* lone surrogate"),
    ([{"id": "a", "text": "t", "title": "\ud800"}], "title holds a lone surrogate"),
])
def test_documents_that_are_not_valid_unicode_are_refused(docs, message):
    from thinkrank.types import as_documents

    with pytest.raises(InvalidInputError, match=message):
        as_documents(docs)


def test_a_query_that_is_not_valid_unicode_is_refused():
    from thinkrank.types import check_query

    with pytest.raises(InvalidInputError, match="query holds a lone surrogate"):
        check_query("cats \udcff")


def test_validation_helpers_never_raise_foreign_errors():
    from thinkrank.validation import check_float, check_int

    for bad in ("1", None, [], object(), True, 1.5):
        with pytest.raises(InvalidInputError, match="n_things"):
            check_int("n_things", bad)
    for bad in ("1", None, math.nan, -math.inf, False):
        with pytest.raises(InvalidInputError, match="rate"):
            check_float("rate", bad)
    assert check_int("n", None, optional=True) is None and check_float("x", 2) == 2.0
