"""The Rank-K listwise prompt, word for word as the released model was trained and run with.

The text is ``rank_k_prompt`` of ``rerank.py`` in github.com/hltcoe/rank-k, including its
leading and trailing newline and the single trailing space at the end of eight of its lines
(spelled out below so no editor can strip them). It is sent as the one user message of a chat,
through the model's own chat template. Passages are numbered from 1, ``[i] text``, separated
by a blank line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from thinkrank.errors import InvalidInputError

RANKK_PROMPT = (
    "\n"
    "Determine a ranking of the passages based on how relevant they are to the query. \n"
    "If the query is a question, how relevant a passage is depends on how well it answers the question. \n"
    "If not, try analyze the intent of the query and assess how well each passage satisfy the intent. \n"
    "The query may have typos and passages may contain contradicting information. \n"
    "However, we do not get into fact-checking. We just rank the passages based on they relevancy to the query. \n"
    "\n"
    "Sort them from the most relevant to the least. \n"
    "Answer with the passage number using a format of `[3] > [2] > [4] = [1] > [5]`. \n"
    "Ties are acceptable if they are equally relevant. \n"
    "I need you to be accurate but overthinking it is unnecessary.\n"
    "Output only the ordering without any other text.\n"
    "\n"
    "Query: {query}\n"
    "\n"
    "{docs}\n"
)
"""The released Rank-K prompt; ``{query}`` and ``{docs}`` are filled by :func:`build_rankk_prompt`."""

# Rank-K's defaults: RankK's signature and RerankerSpec's declared fields (so the CLI, the server
# and their --help) read these, so the library and the command line cannot drift apart.
WINDOW, STRIDE, DEPTH = 20, 10, 100
"""Passages per window, the step between windows, and how many top candidates are reranked."""
PASSAGE_TOKENS = 512
"""Passages are cut to this many tokens."""
MAX_TOKENS = 4096
"""Budget per window for reasoning and ordering together."""

_FIELD = re.compile(r"\{(query|docs)\}")


def check_template(template: str | None) -> str:
    """``template`` (default :data:`RANKK_PROMPT`) after checking it has ``{query}`` and ``{docs}``.

    Raises:
        InvalidInputError: a template that is not a string or lacks one of the two fields.
    """
    if template is None:
        return RANKK_PROMPT
    if not isinstance(template, str):
        raise InvalidInputError(f"a listwise prompt template must be a string, got {type(template).__name__}")
    missing = [f"{{{name}}}" for name in ("query", "docs") if f"{{{name}}}" not in template]
    if missing:
        raise InvalidInputError(
            f"the listwise prompt template lacks {' and '.join(missing)}; it needs {{query}} where the query "
            "goes and {docs} where the numbered passages go"
        )
    return template


def format_passages(passages: Sequence[str]) -> str:
    """``[1] first\\n\\n[2] second…``: the numbered passage block of the prompt."""
    return "\n\n".join(f"[{i}] {text}" for i, text in enumerate(passages, 1))


def build_rankk_prompt(query: str, passages: Sequence[str], template: str | None = None) -> str:
    """The user message asking to rank ``passages`` (already truncated) for ``query``.

    Fields are filled in one pass, so braces or ``{docs}`` inside a query or passage are kept
    literally (``str.format`` gives the same text for the released prompt).

    Raises:
        InvalidInputError: a custom template without ``{query}`` or ``{docs}``.
    """
    values = {"query": query, "docs": format_passages(passages)}
    return _FIELD.sub(lambda m: values[m.group(1)], check_template(template))
