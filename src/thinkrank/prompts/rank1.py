"""The Rank1 prompt (paper Fig. 4, released models), the released dataset templates, and the
reference's rule for closing a chain the model did not close itself.

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
# The default bytes that close an empty think block when reasoning is off (and that close the
# answer of a reasoning-off training example). See REASONING_OFF_CLOSES for the choices.
FORCED_CLOSE = "\n" + THINK_CLOSE
PLACEHOLDER = "FILL_QUERY_HERE"

# Reasoning off: the bytes appended to the prompt (which ends in "<think>") before the answer is
# read. The released code has no reasoning-off mode (the paper's no-reasoning ablation was a
# separately trained model whose format is not released), and the choice changes scores, so it
# is the user's: "newline" (thinkrank's default), "bare", or "empty-chain" (what the reference's
# forced-answer rule gives for an empty chain: prompt + "\n" + "" + "\n</think>").
REASONING_OFF_CLOSES: dict[str, str] = {
    "newline": "\n" + THINK_CLOSE,
    "bare": THINK_CLOSE,
    "empty-chain": "\n\n" + THINK_CLOSE,
}

# Rank1's defaults: Rank1's signature and RerankerSpec's declared fields (so the CLI, the server
# and their --help) read these, so the library and the command line cannot drift apart.
THINK_BUDGET = 1024
"""Most reasoning tokens per pair before the answer is forced."""
REASONING = True
PASSAGE_TOKENS = 2048
"""Passages are cut to this many tokens."""
REASONING_CLOSE = "newline"
"""With reasoning off, the bytes closing the empty think block (a key of REASONING_OFF_CLOSES)."""
TRUE_TOKEN, FALSE_TOKEN = " true", " false"
"""The answer words, single tokens with their leading space."""
_SENTENCE_ENDS = (".", "!", "?")


def cut_forced_chain(chain: str) -> str:
    """A chain that did not close by itself, cut as the released code cuts it: trailing space
    stripped; unless it ends with ``.``, ``!`` or ``?``, cut right after the last of those
    characters anywhere in it (kept whole when it has none); then stripped on both sides."""
    text = chain.rstrip()
    if not text.endswith(_SENTENCE_ENDS):
        last = max(text.rfind(mark) for mark in _SENTENCE_ENDS)
        if last != -1:
            text = text[: last + 1]
    return text.strip()


def forced_close(chain: str) -> str:
    """What is appended to the prompt to force an answer after ``chain`` (the text the model
    wrote after ``<think>`` and before the budget or end-of-sequence stopped it): ``"\n" +
    cut_forced_chain(chain) + "\n</think>"``. The answer is then read as the next token.

    The single place this rule lives: every engine and reranker (and distillation) calls it, so
    one chain gets one score whatever the engine.
    """
    return "\n" + cut_forced_chain(chain) + "\n" + THINK_CLOSE


def resolve_reasoning_close(close: str) -> str:
    """The bytes closing an empty think block: a name from :data:`REASONING_OFF_CLOSES` or the
    literal text itself (optional whitespace, then ``</think>``).

    Raises:
        InvalidInputError: anything else.
    """
    if close in REASONING_OFF_CLOSES:
        return REASONING_OFF_CLOSES[close]
    if isinstance(close, str) and close.endswith(THINK_CLOSE) and not close[: -len(THINK_CLOSE)].strip():
        return close
    names = ", ".join(REASONING_OFF_CLOSES)
    raise InvalidInputError(
        f"reasoning_close={close!r} is not usable: give one of {names}, or the literal closing text "
        f"(whitespace followed by {THINK_CLOSE!r})"
    )

# The dataset templates exactly as released in ``prompts.py`` of github.com/orionw/rank1 (the
# code whose runs produced the paper's numbers). The typeset Table 10 differs from them in
# places (ClimateFEVER and Touche2020 wording, NFCorpus's "--" and trailing space, blank lines
# ending ArguAna/DBPedia/ClimateFEVER/Leetcode, "**any**" in Pony); the released bytes win.
# Keys are lower-case; BRIGHT subsets are "bright-<subset>", and "bright" is the template for
# the remaining BRIGHT subsets. Version this with the prompt: judgments record the template text.
DATASET_TEMPLATES: dict[str, str] = {
    "scifact": (
        "Claim: FILL_QUERY_HERE\n"
        "\n"
        "A relevant passage would provide evidence that either **supports** or **refutes** this "
        "claim. A passage with any information on any related subpart should be relevant."
    ),
    "climatefever": (
        "I am looking to write an essay for and need to find evidence the supports or contradict "
        "this statement:\n"
        "\n"
        "FILL_QUERY_HERE\n"
        "\n"
        "If the passage provides information that supports or contradicts it in any way it is "
        "relevant so I can cite it.\n"
        "\n"
    ),
    "treccovid": (
        "FILL_QUERY_HERE If the article answers any part of the question it is relevant."
    ),
    "arguana": (
        "I am looking to write an essay and need to find counterarguments against this "
        "statement:\n"
        "\n"
        "FILL_QUERY_HERE\n"
        "\n"
        "Does this passage have any counterargument or evidence that could be used to help me?\n"
        "\n"
    ),
    "dbpedia": (
        "I am looking to write an essay on this topic and need as much related background "
        "information to help me. The topic is:\n"
        "\n"
        "FILL_QUERY_HERE\n"
        "\n"
        "If the passage provides any background information that could be connected it is "
        "relevant.\n"
        "\n"
    ),
    "fiqa2018": (
        "FILL_QUERY_HERE Find a passage that would be a good answer from StackExchange."
    ),
    "nfcorpus": (
        "Topic: FILL_QUERY_HERE\n"
        "\n"
        "Given the above topic, I need to learn about all aspects of it. It does not need to be "
        "directly relevant, only tangentially informational. Please mark as relevant any "
        "passages with even weak connections. I need to learn fast for my job, which means I "
        "need to understand each part individually.\n"
        "\n"
        "Again remember, any connection means relevant even if indirect. So if it is not "
        "addressed, that is okay -- it does not need to be explicitly. \n"
        "\n"
        "Find me passages with any type of connection, including weak connections!!!!"
    ),
    "touche2020": (
        "I am looking to write an essay and need to find arguments for or against this "
        "statement:\n"
        "\n"
        "FILL_QUERY_HERE\n"
        "\n"
        "Does this passage have any argument or evidence that could be used to help me?\n"
        "\n"
    ),
    "scidocs": (
        "papers that could be cited in FILL_QUERY_HERE. Anything with even indirect relevance "
        "should be relevant. This includes papers in the same broader field of science"
    ),
    "bright-aops": (
        "Find different but similar math problems to FILL_QUERY_HERE\n"
        "\n"
        "A document is relevant if it uses the same class of functions and shares **any** "
        "overlapping techniques."
    ),
    "bright-theoremqa_questions": (
        "Find a passage which uses the same mathematical process as this one: FILL_QUERY_HERE"
    ),
    "bright-theoremqa_theorems": (
        "Find a passage which uses the same mathematical process as this one: FILL_QUERY_HERE"
    ),
    "bright-leetcode": (
        "I am looking to find different problems that share similar data structures (of any "
        "kind) or algorithms (e.g. DFS, DP, sorting, traversals, etc.). I am looking for "
        "problems that share one or both of these similarities to this:\n"
        "    \n"
        "FILL_QUERY_HERE\n"
        "\n"
        "Does this passage share any similarities? e.g. if there was a textbook on leetcode "
        "problems, this would be in the same book even though it could be in a different "
        "chapter. \n"
        "\n"
        "\n"
    ),
    "bright-pony": (
        "I will use the programming language pony. Problem: FILL_QUERY_HERE\n"
        "\n"
        "But to solve the problem above, I need to know things about pony. A passage is relevant "
        "if it contains docs that match **any** part (even basic parts) of the code I will have "
        "to write for the above program."
    ),
    "bright": (
        "Can you find background information about the concepts used to answer the question:\n"
        "\n"
        "FILL_QUERY_HERE\n"
        "\n"
        "A passage is relevant if it contains background information about a **sub-concept** "
        "that someone might cite/link to when answering the above question."
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
    """A released dataset template name (``"scifact"``, ``"bright-pony"``, …) or a custom template
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
