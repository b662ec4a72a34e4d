"""The Rank1 prompt and the paper's dataset templates, byte for byte."""

import pytest

from thinkrank.errors import InvalidInputError
from thinkrank.prompts.rank1 import DATASET_TEMPLATES, Rank1Prompt, build_rank1_prompt, resolve_template


def test_rank1_prompt_is_the_released_prompt_byte_for_byte():
    expected = (
        b"Determine if the following passage is relevant to the query. Answer only with 'true' or 'false'.\n"
        b"Query: what is a cat\n"
        b"Passage: Cats are felines.\n"
        b"<think>"
    )
    assert build_rank1_prompt("what is a cat", "Cats are felines.").encode("utf-8") == expected


def test_scifact_template_wraps_the_query_as_in_table_10():
    prompt = build_rank1_prompt("Vitamin D prevents colds.", "P", template="scifact")
    assert prompt.split("\nPassage: ")[0].split("Query: ", 1)[1] == (
        "Claim: Vitamin D prevents colds.\n\nA relevant passage would provide evidence that either "
        "**supports** or **refutes** this claim. A passage with any information on any related subpart "
        "should be relevant."
    )


def test_instruction_is_appended_to_the_query_before_the_template():
    prompt = Rank1Prompt.create("covid origin", "treccovid", instruction="Assume I know nothing.")
    assert prompt.query == "covid origin Assume I know nothing. If the article answers any part of the question it is relevant."


def test_custom_template_and_dataset_aliases():
    assert resolve_template("Find: FILL_QUERY_HERE!") == "Find: FILL_QUERY_HERE!"
    assert resolve_template("TREC-COVID") == DATASET_TEMPLATES["treccovid"]
    assert resolve_template("bright-pony").startswith("I will use the programming language pony.")
    assert resolve_template(None) is None


def test_unknown_template_name_lists_the_choices():
    with pytest.raises(InvalidInputError, match="unknown prompt 'msmarco'.*scifact.*FILL_QUERY_HERE"):
        resolve_template("msmarco")


def test_every_table_10_template_has_exactly_one_placeholder_and_no_literal_newline_marker():
    assert len(DATASET_TEMPLATES) == 15
    for name, tpl in DATASET_TEMPLATES.items():
        assert tpl.count("FILL_QUERY_HERE") == 1, name
        assert "<newline>" not in tpl, name
