"""Rank-K pieces that need no generation: the prompt bytes, the window plan, settings checks."""

from __future__ import annotations

import pytest

from thinkrank import RankK
from thinkrank.errors import InvalidInputError
from thinkrank.prompts.rankk import RANKK_PROMPT, build_rankk_prompt
from thinkrank.rerankers.listwise import plan_windows

# The released prompt (hltcoe/rank-k rerank.py), typed out again: eight lines end in one space.
EXPECTED = (
    b"\n"
    b"Determine a ranking of the passages based on how relevant they are to the query. \n"
    b"If the query is a question, how relevant a passage is depends on how well it answers the question. \n"
    b"If not, try analyze the intent of the query and assess how well each passage satisfy the intent. \n"
    b"The query may have typos and passages may contain contradicting information. \n"
    b"However, we do not get into fact-checking. We just rank the passages based on they relevancy to the query. \n"
    b"\n"
    b"Sort them from the most relevant to the least. \n"
    b"Answer with the passage number using a format of `[3] > [2] > [4] = [1] > [5]`. \n"
    b"Ties are acceptable if they are equally relevant. \n"
    b"I need you to be accurate but overthinking it is unnecessary.\n"
    b"Output only the ordering without any other text.\n"
    b"\n"
    b"Query: what is a cat\n"
    b"\n"
    b"[1] Cats are felines.\n"
    b"\n"
    b"[2] Felidae Cats purr.\n"
)


def test_prompt_is_the_released_prompt_byte_for_byte():
    prompt = build_rankk_prompt("what is a cat", ["Cats are felines.", "Felidae Cats purr."])
    assert prompt.encode("utf-8") == EXPECTED
    assert sum(line.endswith(" ") for line in RANKK_PROMPT.split("\n")) == 8


def test_fields_are_filled_once_so_braces_in_text_survive():
    prompt = build_rankk_prompt("q {docs}", ["a {query} b"])
    assert prompt.endswith("Query: q {docs}\n\n[1] a {query} b\n")


def test_custom_template_needs_both_fields():
    assert build_rankk_prompt("q", ["a", "b"], "Q={query}|{docs}") == "Q=q|[1] a\n\n[2] b"
    with pytest.raises(InvalidInputError, match=r"\{docs\}"):
        build_rankk_prompt("q", ["a"], "Query: {query}")


@pytest.mark.parametrize(
    ("n", "window", "stride", "depth", "expected"),
    [
        (100, 20, 10, 100, [(s, s + 20) for s in range(80, -1, -10)]),  # the paper's 9 windows
        (250, 20, 10, 100, [(s, s + 20) for s in range(80, -1, -10)]),  # only the top 100
        (5, 20, 10, 100, [(0, 5)]),
        (25, 10, 5, 100, [(15, 25), (10, 20), (5, 15), (0, 10)]),
        (25, 20, 10, 25, [(5, 25), (0, 20)]),  # the reference's second window would be empty
        (25, 20, 10, 100, [(5, 25), (0, 20)]),
        (95, 20, 10, 100, [(75, 95), (65, 85), (55, 75), (45, 65), (35, 55), (25, 45), (15, 35), (5, 25), (0, 20)]),
        (30, 10, 10, None, [(20, 30), (10, 20), (0, 10)]),
        (1, 20, 10, 100, []),
        (0, 20, 10, 100, []),
    ],
)
def test_window_plan(n, window, stride, depth, expected):
    assert plan_windows(n, window, stride, depth) == expected


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"window": 1}, "window"),
        ({"window": 10, "stride": 11}, "stride"),
        ({"stride": 0}, "stride"),
        ({"depth": 0}, "depth"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_passage_tokens": 0}, "max_passage_tokens"),
        ({"temperature": -1.0}, "temperature"),
        ({"prompt": "no fields"}, "{query}"),
    ],
)
def test_bad_settings_are_refused_before_any_model_loads(kwargs, message):
    with pytest.raises(InvalidInputError, match=message):
        RankK("/nonexistent/model", engine="transformers", **kwargs)
