"""The Rank1 prompt (paper Fig. 4, released models) and the dataset templates of Table 10.

The prompt is raw text (no chat template) ending in ``<think>``; the model writes its chain,
then ``</think> true`` or ``</think> false``.
"""

from __future__ import annotations

from dataclasses import dataclass

from thinkrank.errors import InvalidInputError

RANK1_PROMPT = (
    "Determine if the following passage is relevant to the query. "
    "Answer only with 'true' or 'false'.\n"
    "Query: {query}\n"
    "Passage: {passage}\n"
    "<think>"
)
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
# How a chain is closed when Rank1 closes it itself: after a chain cut at the budget, or at once
# when reasoning is off. Teachers, training data and inference must all use the same bytes.
FORCED_CLOSE = "\n" + THINK_CLOSE
PLACEHOLDER = "FILL_QUERY_HERE"

_SUPPORT_REFUTE = (
    "Claim: FILL_QUERY_HERE\n\nA relevant passage would provide evidence that either **supports** or "
    "**refutes** this claim. A passage with any information on any related subpart should be relevant."
)
_SAME_PROCESS = "Find a passage which uses the same mathematical process as this one: FILL_QUERY_HERE"

# Paper Table 10, with <newline> written as "\n". Keys are lower-case; BRIGHT subsets are
# "bright-<subset>", and "bright" is the template for the remaining non-StackExchange subsets.
DATASET_TEMPLATES: dict[str, str] = {
    "scifact": _SUPPORT_REFUTE,
    "climatefever": _SUPPORT_REFUTE,
    "treccovid": "FILL_QUERY_HERE If the article answers any part of the question it is relevant.",
    "arguana": (
        "I am looking to write an essay and need to find counterarguments against this statement:\n\n"
        "FILL_QUERY_HERE\n\nDoes this passage have any counterargument or evidence that could be used to help me?"
    ),
    "dbpedia": (
        "I am looking to write an essay on this topic and need as much related background information to "
        "help me. The topic is:\n\nFILL_QUERY_HERE\n\nIf the passage provides any background information "
        "that could be connected it is relevant."
    ),
    "fiqa2018": "FILL_QUERY_HERE Find a passage that would be a good answer from StackExchange.",
    "nfcorpus": (
        "Topic: FILL_QUERY_HERE\n\nGiven the above topic, I need to learn about all aspects of it. It does "
        "not need to be directly relevant, only tangentially informational. Please mark as relevant any "
        "passages with even weak connections. I need to learn fast for my job, which means I need to "
        "understand each part individually.\n\nAgain remember, any connection means relevant even if "
        "indirect. So if it is not addressed, that is okay \u2013 it does not need to be explicitly.\n\n"
        "Find me passages with any type of connection, including weak connections!!!!"
    ),
    "touche2020": "FILL_QUERY_HERE **any** arguments for or against",
    "scidocs": (
        "papers that could be cited in FILL_QUERY_HERE. Anything with even indirect relevance should be "
        "relevant. This includes papers in the same broader field of science"
    ),
    "bright-aops": (
        "Find different but similar math problems to FILL_QUERY_HERE\n\nA document is relevant if it uses "
        "the same class of functions and shares **any** overlapping techniques."
    ),
    "bright-theoremqa_questions": _SAME_PROCESS,
    "bright-theoremqa_theorems": _SAME_PROCESS,
    "bright-leetcode": (
        "I am looking to find different problems that share similar data structures (of any kind) or "
        "algorithms (e.g. DFS, DP, sorting, traversals, etc.). I am looking for problems that share one or "
        "both of these similarities to this:\n\nFILL_QUERY_HERE\n\nDoes this passage share any "
        "similarities? e.g. if there was a textbook on leetcode problems, this would be in the same book "
        "even though it could be in a different chapter."
    ),
    "bright-pony": (
        "I will use the programming language pony. Problem: FILL_QUERY_HERE\n\nBut to solve the problem "
        "above, I need to know things about pony. A passage is relevant if it contains docs that match any "
        "part (even basic parts) of the code I will have to write for the above program."
    ),
    "bright": (
        "Can you find background information about the concepts used to answer the question:\n\n"
        "FILL_QUERY_HERE\n\nA passage is relevant if it contains background information about a "
        "**sub-concept** that someone might cite/link to when answering the above question."
    ),
}
_ALIASES = {
    "climate-fever": "climatefever",
    "trec-covid": "treccovid",
    "fiqa": "fiqa2018",
    "webis-touche2020": "touche2020",
    "touche": "touche2020",
    "dbpedia-entity": "dbpedia",
    "bright-theoremqa-questions": "bright-theoremqa_questions",
    "bright-theoremqa-theorems": "bright-theoremqa_theorems",
}


def resolve_template(prompt: str | None) -> str | None:
    """A dataset name from Table 10 (``"scifact"``, ``"bright-pony"``, …) or a custom template
    containing ``FILL_QUERY_HERE``; None means the plain query.

    Raises:
        InvalidInputError: an unknown name that is not a template either.
    """
    if prompt is None:
        return None
    if PLACEHOLDER in prompt:
        return prompt
    key = prompt.strip().lower().replace(" ", "-")
    key = _ALIASES.get(key, key)
    if key in DATASET_TEMPLATES:
        return DATASET_TEMPLATES[key]
    names = ", ".join(sorted(DATASET_TEMPLATES))
    raise InvalidInputError(
        f"unknown prompt {prompt!r}: use a dataset name ({names}) or a custom template containing "
        f"{PLACEHOLDER}"
    )


@dataclass(frozen=True)
class Rank1Prompt:
    """Builds Rank1 prompts for one query: template and instruction applied once."""

    query: str

    @classmethod
    def create(cls, query: str, template: str | None = None, instruction: str | None = None) -> Rank1Prompt:
        """``instruction`` is appended to the query; a template then wraps the result."""
        if instruction and instruction.strip():
            query = f"{query} {instruction.strip()}"
        tpl = resolve_template(template)
        if tpl is not None:
            query = tpl.replace(PLACEHOLDER, query)
        return cls(query)

    @property
    def head(self) -> str:
        """Everything before the passage."""
        return RANK1_PROMPT.split("{passage}")[0].format(query=self.query)

    @property
    def tail(self) -> str:
        """Everything after the passage (never truncated)."""
        return RANK1_PROMPT.split("{passage}")[1]

    def render(self, passage: str) -> str:
        return self.head + passage + self.tail


def build_rank1_prompt(
    query: str, passage: str, template: str | None = None, instruction: str | None = None
) -> str:
    """The exact Rank1 prompt for one (query, passage) pair, ending in ``<think>``."""
    return Rank1Prompt.create(query, template, instruction).render(passage)
