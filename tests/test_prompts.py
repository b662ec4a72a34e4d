"""The Rank1 prompt and the released dataset templates, byte for byte."""

import json
from pathlib import Path

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


def test_scifact_template_wraps_the_query_as_released():
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


def test_every_template_has_exactly_one_placeholder_and_no_literal_newline_marker():
    assert len(DATASET_TEMPLATES) == 15
    for name, tpl in DATASET_TEMPLATES.items():
        assert tpl.count("FILL_QUERY_HERE") == 1, name
        assert "<newline>" not in tpl, name


# The strings of PROMPT_DICT in prompts.py of github.com/orionw/rank1 (what run_mteb.py ran),
# saved from the released file; thinkrank's name for each.
RELEASED = json.loads((Path(__file__).parent / "fixtures" / "rank1_released_prompts.json").read_text("utf-8"))
RELEASED_NAMES = {
    "scifact": "SciFact", "climatefever": "ClimateFEVER", "treccovid": "TRECCOVID", "arguana": "ArguAna",
    "dbpedia": "DBPedia", "fiqa2018": "FiQA2018", "nfcorpus": "NFCorpus", "touche2020": "Touche2020",
    "scidocs": "SCIDOCS", "bright-aops": "BrightRetrieval_aops",
    "bright-theoremqa_questions": "BrightRetrieval_theoremqa_questions",
    "bright-theoremqa_theorems": "BrightRetrieval_theoremqa_theorems", "bright-leetcode": "BrightRetrieval_leetcode",
    "bright-pony": "BrightRetrieval_pony", "bright": "BrightRetrieval",
}


def test_dataset_templates_are_the_released_bytes_not_the_typeset_table():
    assert set(DATASET_TEMPLATES) == set(RELEASED_NAMES)
    assert set(RELEASED["templates"]) == set(RELEASED_NAMES.values())
    for ours, theirs in RELEASED_NAMES.items():
        assert DATASET_TEMPLATES[ours].encode("utf-8") == RELEASED["templates"][theirs].encode("utf-8"), ours


@pytest.mark.parametrize("name, released_bytes", [
    ("nfcorpus", b"that is okay -- it does not need to be explicitly. \n\nFind me"),  # not an en dash
    ("bright-pony", b"docs that match **any** part"),
    ("touche2020", b"need to find arguments for or against this statement:\n\nFILL_QUERY_HERE\n\n"),
    ("climatefever", b"find evidence the supports or contradict this statement:"),
    ("arguana", b"help me?\n\n"),
    ("dbpedia", b"it is relevant.\n\n"),
    ("bright-leetcode", b"to this:\n    \nFILL_QUERY_HERE\n\n"),
])
def test_where_the_released_templates_differ_from_table_10(name, released_bytes):
    rendered = build_rank1_prompt("Q", "P", template=name).encode("utf-8")
    assert released_bytes.replace(b"FILL_QUERY_HERE", b"Q") in rendered


def _released_forced_suffix(chain: str) -> str:
    """orionw/rank1 rank1.py ``_fix_incomplete_responses``, restated: strip the end; unless it
    ends with . ! or ?, cut after the last of them (whole when none); strip; the prompt gets
    "\\n" + chain + "\\n</think>"."""
    text = chain.rstrip()
    if not text.endswith((".", "!", "?")):
        last = max(text.rfind("."), text.rfind("!"), text.rfind("?"))
        if last != -1:
            text = text[: last + 1]
    return "\n" + text.strip() + "\n</think>"


@pytest.mark.parametrize("chain", [
    " The passage is relevant. It mentions", "It costs 3.5 dollars", "Yes!  \n", "", "   ", "no sentence end at all",
    "\nTrue\nFalse", "Is it? Maybe. Hmm", "ends with a question?", "a.b.c", " Ok!\n\nAnd so",
])
def test_forced_close_is_the_released_rule(chain):
    from thinkrank.prompts.rank1 import cut_forced_chain, forced_close

    assert forced_close(chain) == _released_forced_suffix(chain)
    assert "\n" + cut_forced_chain(chain) + "\n</think>" == forced_close(chain)


def test_reasoning_off_closing_bytes_are_a_choice():
    from thinkrank.prompts.rank1 import resolve_reasoning_close

    assert resolve_reasoning_close("newline") == "\n</think>"
    assert resolve_reasoning_close("bare") == "</think>"
    assert resolve_reasoning_close("empty-chain") == "\n\n</think>" == _released_forced_suffix("")
    assert resolve_reasoning_close(" \n</think>") == " \n</think>"
    with pytest.raises(InvalidInputError, match="newline, bare, empty-chain"):
        resolve_reasoning_close("x</think>")
