"""Reading listwise orderings: every documented rule by example, and properties over any text."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from thinkrank import parse_ranking
from thinkrank.errors import InvalidInputError
from thinkrank.rerankers.parsing import format_ordering, read_answer


def test_released_format_with_a_tie():
    assert parse_ranking("[3] > [2] > [4] = [1] > [5]", 5) == [[3], [2], [4, 1], [5]]


def test_no_spaces_and_bare_numbers():
    assert parse_ranking("[3]>[1]=[2]", 3) == [[3], [1, 2]]
    assert parse_ranking("3 > 1 > 2", 3) == [[3], [1], [2]]
    assert parse_ranking("2=3>1", 3) == [[2, 3], [1]]


def test_ids_outside_the_window_are_skipped_and_reading_goes_on():
    assert parse_ranking("[7] > [2] > [0] > [3]", 3) == [[2], [3], [1]]
    # a skipped id between two tied ids keeps the tie
    assert parse_ranking("[1] = [9] = [2] > [3]", 3) == [[1, 2], [3]]


def test_a_repeated_id_ends_the_parse():
    # Without the stop the [4] after the repeat would come before [2].
    assert parse_ranking("[3] > [1] > [3] > [4] > [2]", 4) == [[3], [1], [2], [4]]
    assert parse_ranking("[2] = [2] > [1]", 3) == [[2], [1], [3]]


def test_missing_ids_follow_in_window_order_one_group_each():
    assert parse_ranking("[4] > [2]", 5) == [[4], [2], [1], [3], [5]]


def test_the_last_line_holding_an_ordering_wins():
    text = "Draft: [1] > [2] > [3]\nOn reflection [3] matters most.\n[3] > [1] > [2]\nThis ordering reflects relevance."
    assert parse_ranking(text, 3) == [[3], [1], [2]]


def test_mentions_of_passages_are_not_orderings():
    assert parse_ranking("[2] is about cats.\nPassage [3] is off topic.", 3) == [[1], [2], [3]]
    assert parse_ranking("The value 5 > 3 holds for x.", 5) == [[1], [2], [3], [4], [5]]


def test_text_and_markdown_around_the_ordering():
    assert parse_ranking("Ranking: [2] > [1]", 3) == [[2], [1], [3]]
    assert parse_ranking("**[2] > [3]**", 3) == [[2], [3], [1]]
    assert parse_ranking("`3 > 1`", 3) == [[3], [1], [2]]
    assert parse_ranking("[2]", 3) == [[2], [1], [3]]
    # with brackets on the line, only bracketed numbers are ids: "Top 3" is not passage 3
    assert parse_ranking("Top 3: [2] > [1]", 3) == [[2], [1], [3]]


def test_answer_is_read_after_the_reasoning():
    text = "<think>Maybe [1] > [2] > [3].\nNo: [2] first.</think>\n\n[2] > [3] > [1]"
    answer = read_answer(text, 3)
    assert answer.groups == [[2], [3], [1]]
    assert answer.reasoning == "Maybe [1] > [2] > [3].\nNo: [2] first."
    assert answer.ordering == "[2] > [3] > [1]"


def test_a_chain_that_never_closed_gives_no_ordering():
    # drafts inside an unfinished chain are not answers
    assert parse_ranking("<think>I would say [2] > [1]", 2) == [[1], [2]]
    opened = read_answer("I would say [2] > [1]", 2, opened=True)  # the template opened <think>
    assert (opened.groups, opened.ordering, opened.reasoning) == ([[1], [2]], "", "I would say [2] > [1]")
    closed = read_answer("I would say [1].\n</think>\n[2] > [1]", 2, opened=True)
    assert (closed.groups, closed.reasoning) == ([[2], [1]], "I would say [1].")


def test_answer_after_think_without_an_ordering_does_not_fall_back_to_drafts():
    assert parse_ranking("<think>[2] > [1]</think>\nI cannot decide.", 2) == [[1], [2]]


def test_without_think_tags_the_reasoning_is_what_precedes_the_ordering_line():
    answer = read_answer("Passage 2 answers it.\nSo:\n[2] > [1]\nDone.", 2)
    assert (answer.reasoning, answer.ordering) == ("Passage 2 answers it.\nSo:", "[2] > [1]")
    assert read_answer("no ordering at all", 2).reasoning == "no ordering at all"


@pytest.mark.parametrize(
    "text",
    ["", "   \n\n", "garbage ]]]>>>[[[ ===", "[" + "9" * 6000 + "] > [2]", "[99999999999999999999] = [1]",
     "［２］ > ［１］", "٣ > ١", "[-1] > [1]", "[2.5] > [1]", "\x00[1]\ud800 > [2]", "=> [2] >= [1] <"],
)
def test_never_raises_and_always_returns_a_permutation(text):
    groups = parse_ranking(text, 2)
    assert sorted(i for g in groups for i in g) == [1, 2]


def test_unicode_digits_are_not_ids():
    assert parse_ranking("٣ > ١", 3) == [[1], [2], [3]]  # Arabic-Indic digits
    assert parse_ranking("[0] > [00] > [002]", 3) == [[2], [1], [3]]  # leading zeros read as numbers


def test_zero_passages_and_bad_n():
    assert parse_ranking("[1] > [2]", 0) == []
    with pytest.raises(InvalidInputError, match="n"):
        parse_ranking("[1]", -1)


def test_format_ordering_writes_the_model_format():
    assert format_ordering([[3], [2], [4, 1], [5]]) == "[3] > [2] > [4] = [1] > [5]"


# ---- properties ---------------------------------------------------------------------------
_PIECES = st.sampled_from(
    ["[", "]", ">", "=", " ", "\n", "<think>", "</think>", "1", "2", "7", "0", "[1]", "[2]", "[3]", "[12]",
     "[999999999999]", " > ", " = ", "Ranking:", "é", "**", "`", "-", "."]
)


def _is_permutation(groups, n):
    return all(groups) and sorted(i for g in groups for i in g) == list(range(1, n + 1))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300), st.integers(0, 25))
def test_any_text_gives_a_full_permutation(text, n):
    assert _is_permutation(parse_ranking(text, n), n)


@settings(max_examples=300, deadline=None)
@given(st.lists(_PIECES, max_size=60).map("".join), st.integers(0, 25))
def test_ordering_like_noise_gives_a_full_permutation(text, n):
    assert _is_permutation(parse_ranking(text, n), n)


@st.composite
def _orderings(draw):
    """A permutation of 1..n cut into groups, formatted with random spacing."""
    n = draw(st.integers(1, 30))
    perm = draw(st.permutations(list(range(1, n + 1))))
    cuts = sorted(draw(st.sets(st.integers(1, n - 1), max_size=n - 1))) if n > 1 else []
    groups = [list(perm[a:b]) for a, b in zip([0, *cuts], [*cuts, n])]
    gt, eq = draw(st.sampled_from([" > ", ">", "  >  "])), draw(st.sampled_from([" = ", "=", " =  "]))
    text = gt.join(eq.join(f"[{i}]" for i in g) for g in groups)
    return n, groups, text


@settings(max_examples=200, deadline=None)
@given(_orderings(), st.sampled_from(["", "Some thoughts on [1] and [2].\n", "<think>[1] > [2]\n</think>\n"]),
       st.sampled_from(["", "\n", "\nThat is my answer."]))
def test_well_formed_orderings_round_trip(ordering, before, after):
    n, groups, text = ordering
    assert parse_ranking(before + text + after, n) == groups


def test_one_split_reasoning_for_the_listwise_parser_and_the_teachers():
    from thinkrank.distill.answers import trace_from_response
    from thinkrank.rerankers.parsing import split_reasoning

    # No think tags: no answer read here; the listwise parser searches the whole text...
    assert split_reasoning("[2] > [1]") == ("", None)
    assert read_answer("[2] > [1]", 2).groups == [[2], [1]]
    # ...and a chat teacher takes all of it as its answer.
    chat = lambda content, **extra: {"choices": [{"message": {"content": content, **extra}}]}  # noqa: E731
    assert (trace_from_response(chat(" just true ")).reasoning, trace_from_response(chat(" just true ")).answer_text) \
        == ("", "just true")
    # Tags: the chain before the last close (a leading <think> removed), the answer after it.
    assert split_reasoning(" <think> a </think> b </think> true ") == ("a </think> b", "true")
    # Opened by the prompt (QwQ's template, a completion after Rank1's "<think>") and never closed: no answer.
    assert split_reasoning("it is true", opened=True) == ("it is true", "")
    completion = trace_from_response({"choices": [{"text": "<think> it is true"}]})
    assert (completion.reasoning, completion.answer_text) == ("it is true", "")
    # An unclosed chain opened in the text: words inside it are no answer, for either caller.
    assert split_reasoning("Sure. <think> it is true") == ("Sure. <think> it is true", "")
    assert trace_from_response(chat("Sure. <think> it is true")).answer_text == ""
    # A chain returned apart (reasoning_content): the content is the answer, after any close it holds.
    apart = trace_from_response(chat("x</think> **False**", reasoning_content=" the chain "))
    assert (apart.reasoning, apart.answer_text) == ("the chain", "**False**")
    assert split_reasoning("false", reasoning="  ") == ("", None)  # a blank chain is no chain
