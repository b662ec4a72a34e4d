"""Rank-R1 against its released code: prompts, answers and the sorts' comparison sequences, from
fixtures made by running ielab/llm-rankers (tests/fixtures/families/make_listwise_setwise_fixtures.py)."""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

import pytest

from thinkrank.errors import InvalidInputError
from thinkrank.families import rank_r1

HERE = Path(__file__).parent / "fixtures/families"
FIXTURES = json.loads((HERE / "rank_r1_released.json").read_text("utf-8"))
_spec = importlib.util.spec_from_file_location("make_fixtures", HERE / "make_listwise_setwise_fixtures.py")
_generator = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_generator)
scripted_choice = _generator.scripted_choice  # the judge the released sorts were run with


@pytest.mark.parametrize("case", FIXTURES["inputs"], ids=lambda c: c["name"])
def test_comparison_input_is_the_released_chat(case):
    shown = [case["documents"][i] for i in case["shown"]]
    model_input = rank_r1.build_input(case["query"], shown, instruction=case["instruction"])
    assert model_input.prompt is None and model_input.assistant_prefix == ""
    assert list(model_input.messages) == case["messages"]


@pytest.mark.parametrize("case", FIXTURES["parses"], ids=lambda c: c["name"])
def test_answer_matches_the_released_compare(case):
    answer = rank_r1.parse_set(case["output"], case["m"])
    if case["winner"] is None:  # "Unexpected voting.": the released sort keeps the parent
        assert answer.chosen is None and answer.fallback is not None and answer.fallback.reason == "unexpected"
    else:
        assert answer.fallback is None and case["shown"][answer.chosen] == case["winner"]


def _run(case, **options):
    sort = rank_r1.SetwiseSort(case["n"], method=case["method"], k=case["k"], num_child=case["num_child"], **options)
    calls = []
    while sort.pending is not None:
        docs = sort.pending.docs
        calls.append(list(docs))
        position = scripted_choice(docs, case["relevance"])
        sort.answer(None if position is None else docs[position])
    return calls, sort.ranking()


@pytest.mark.parametrize("case", FIXTURES["sorts"], ids=lambda c: f"{c['method']}-{c['n']}-{c['k']}-{c['num_child']}")
def test_sort_asks_what_the_released_sort_asks(case):
    calls, ranking = _run(case, shuffle=False)
    # The released code also asks sets of one (or none), whose answer cannot change anything.
    assert calls == [c for c in case["calls"] if len(c) >= 2]
    assert ranking == case["ranking"]


def test_shuffle_is_seeded_and_does_not_change_the_sort():
    case = next(c for c in FIXTURES["sorts"] if c["method"] == "heapsort" and c["n"] == 100)
    sorts = [rank_r1.SetwiseSort(100, seed=s) for s in (7, 7, 8)]
    shown = []
    for sort in sorts:
        seen = []
        while sort.pending is not None:
            comparison = sort.pending
            assert sorted(comparison.shown) == sorted(comparison.docs)
            seen.append(comparison.shown)
            label = scripted_choice(comparison.shown, case["relevance"])  # the judge reads the shown order
            sort.answer(None if label is None else comparison.shown[label])
        shown.append(seen)
        assert sort.ranking() == case["ranking"]  # the judge is order-free: shuffling changes no answer
    assert shown[0] == shown[1] and shown[0] != shown[2]


def test_sort_many_batches_queries_as_single_runs():
    cases = [c for c in FIXTURES["sorts"] if c["n"] >= 20]
    sorts = [rank_r1.SetwiseSort(c["n"], method=c["method"], k=c["k"], num_child=c["num_child"], shuffle=False)
             for c in cases]
    rounds = []

    def compare(batch):
        rounds.append(len(batch))
        answers = []
        for i, comparison in batch:
            position = scripted_choice(comparison.docs, cases[i]["relevance"])
            answers.append(None if position is None else comparison.docs[position])
        return answers

    rank_r1.sort_many(sorts, compare)
    assert [s.ranking() for s in sorts] == [c["ranking"] for c in cases]
    assert len(rounds) == max(len([x for x in c["calls"] if len(x) >= 2]) for c in cases)
    assert sum(rounds) == sum(len([x for x in c["calls"] if len(x) >= 2]) for c in cases)


def test_rank_and_bad_use():
    rng = random.Random(1)
    relevance = [rng.random() for _ in range(30)]
    order = rank_r1.rank(30, lambda c: max(c.docs, key=lambda d: relevance[d]), k=30, num_child=3)
    assert order == sorted(range(30), key=lambda d: -relevance[d])  # a perfect judge gives the true order
    sort = rank_r1.SetwiseSort(5, num_child=2)
    with pytest.raises(InvalidInputError, match="not one of"):
        sort.answer(99)
    with pytest.raises(InvalidInputError, match="not done"):
        sort.ranking()
    for bad in ({"k": 0}, {"num_child": 20}, {"method": "quicksort"}):
        with pytest.raises(InvalidInputError):
            rank_r1.SetwiseSort(5, **bad)
    with pytest.raises(InvalidInputError, match="1 to 20"):
        rank_r1.build_input("q", [f"d{i}" for i in range(21)])
    with pytest.raises(InvalidInputError):
        rank_r1.parse_set("<answer>[1]</answer>", 0)
    with pytest.raises(InvalidInputError, match="instruction"):
        rank_r1.build_input("q", ["d"], instruction=3)  # type: ignore[arg-type]


def test_a_model_round_trip_through_the_helpers():
    """The reranker's loop: the chat of the pending set, the model's text, the candidate it names."""
    documents = [f"document {i}" for i in range(25)]
    relevance = [(i * 7) % 25 for i in range(25)]  # candidate 7 is the best (relevance 24)
    sort = rank_r1.SetwiseSort(25, k=1, seed=3)
    while sort.pending is not None:
        comparison = sort.pending
        chat = rank_r1.comparison_input("q", documents, comparison)
        user = chat.messages[1]["content"]
        best = max(comparison.shown, key=lambda d: relevance[d])
        assert f"\n[{comparison.shown.index(best) + 1}] document {best}\n" in user
        text = f"<think>best</think>\n<answer>[{comparison.shown.index(best) + 1}]</answer>"
        sort.answer(rank_r1.chosen_candidate(comparison, rank_r1.parse_set(text, len(comparison.shown))))
    assert sort.ranking()[0] == 7
