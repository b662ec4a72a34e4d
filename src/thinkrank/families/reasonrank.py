"""ReasonRank: a listwise reasoning reranker (8421BCD/ReasonRank), as released.

One call ranks a window of up to 20 passages of one query (windows of 20, step 10, over the top
100). The model reasons inside ``<think>…</think>``, then writes the ordering inside
``<answer>…</answer>`` as ``[2] > [1] > …``.

Two prompt modes, as the released ``prompt_mode``:

* ``"reasoning"`` (``rank_GPT_reasoning``): reasonrank-7B and reasonrank-32B (Qwen2.5-Instruct
  backbones). A system prompt that asks for ``<think>``/``<answer>``; greedy, budget 3172.
* ``"qwen3"`` (``rank_GPT_qwen3``): reasonrank-8B (Qwen3-8B). The plain RankLLM system prompt,
  the answer tags asked for in the user turn; sampled (0.6 / top-p 0.95 / top-k 20), budget 3172.

Bytes. The released ``create_prompt`` renders the chat with the model's template and then runs
``ftfy.fix_text`` over the whole rendered prompt; passages were already passed through
``fix_text`` one by one (its default settings), cut to ``max_passage_length`` tokens and had
``[n]`` rewritten to ``(n)`` (so a passage cannot forge an id); the query has ``[n]`` rewritten
too. Here the same steps give chat ``messages``: each turn's text is passed through ``fix_text``
with HTML unescaping off, which is what the whole-prompt call does (its first line,
``<|im_start|>system``, holds a ``<``, which turns ftfy's "auto" HTML unescaping off for the
whole text) and, since ftfy works line by line and the template puts every turn on lines of its
own, gives the same bytes once the template renders them (tested against the released code).

Reading (``rerank/rankllm.py``: ``_clean_response``, ``_remove_duplicate``,
``receive_permutation``): the text inside the first ``<think>…</think>\\s*<answer>…</answer>``
(searched in the lower-cased output); without it, what follows the last ``<answer>``; without
that either, **the whole output, reasoning included**. Every maximal run of digit characters in
it is an id (``[3] > [1]`` and ``3, 1`` read alike); ids are 1-based; a repeated id keeps its
first place, ids outside the window are dropped, ids left out follow in their window order. A
run that ``int()`` refuses (``²``, more than 4300 digits) makes the released code keep the
window as it was. thinkrank reads exactly so, and flags every window that was not read from a
well-formed answer, or lacked ids, with a :class:`~thinkrank.families.base.Fallback`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from thinkrank.errors import InvalidInputError, MissingExtraError
from thinkrank.families.base import Fallback, Kind, ModelInput, Source, WindowAnswer
from thinkrank.families.sampling import Sampling

NAME = "reasonrank"
KIND: Kind = "query"

Mode = Literal["reasoning", "qwen3"]
MODES: tuple[Mode, ...] = ("reasoning", "qwen3")

COMMIT = "06721fd6ef3766c0e00d59a87d2696a0b4b0c17a"
SOURCE = Source("8421BCD/ReasonRank", COMMIT, "rerank/rank_listwise_os_llm.py:RankListwiseOSLLM.create_prompt")
PARSER_SOURCE = Source("8421BCD/ReasonRank", COMMIT, "rerank/rankllm.py:RankLLM.receive_permutation")
"""Where the reading rule comes from (``_clean_response`` and ``_remove_duplicate`` with it)."""

MODELS: dict[str, Mode] = {
    "liuwenhan/reasonrank-7B": "reasoning",
    "liuwenhan/reasonrank-32B": "reasoning",
    "liuwenhan/reasonrank-8B": "qwen3",
}
"""The released checkpoints and the prompt mode each was trained with (``run_rank_llm.sh``)."""

DEFAULT_MODEL = "liuwenhan/reasonrank-7B"

WINDOW = 20
STEP = 10
DEPTH = 100
"""Released sliding windows: 20 passages, step 10, over the top 100 (``run_rank_llm.sh``)."""

MAX_PASSAGE_TOKENS = 512
"""Released passage cut for BRIGHT and R2MED (``index_and_topics.py:DOC_MAXLEN``; 100 for TREC/BEIR)."""

REASONING_MAXLEN = 3072
SAMPLING: dict[Mode, Sampling] = {
    # run_llm_batched: max_tokens = reasoning_maxlen + 100, no stop strings.
    "reasoning": Sampling(max_tokens=REASONING_MAXLEN + 100, temperature=0.0),
    "qwen3": Sampling(max_tokens=REASONING_MAXLEN + 100, temperature=0.6, top_p=0.95, top_k=20, min_p=0.0),
}

SYSTEM_PROMPT = (
    "You are RankLLM, an intelligent assistant that can rank passages based on their relevance to the query."
)
"""``listwise_prompt_r1.toml: system_prompt`` (the ``qwen3`` mode)."""

SYSTEM_PROMPT_REASONING = (
    SYSTEM_PROMPT + " Given a query and a passage list, you first thinks about the reasoning process in the mind "
    "and then provides the answer (i.e., the reranked passage list). The reasoning process and answer are enclosed "
    "within <think> </think> and <answer> </answer> tags, respectively, i.e., <think> reasoning process here "
    "</think> <answer> answer here </answer>."
)
"""``listwise_prompt_r1.toml: system_prompt_reasoning`` (the ``reasoning`` mode), grammar as released."""

_PREFIX = (
    "I will provide you with {num} passages, each indicated by a numerical identifier []. "
    "Rank the passages based on their relevance to the search query: {query}.\n"
)
_POST_COMMON = (
    "Search Query: {query}.\nRank the {num} passages above based on their relevance to the search query. "
    "All the passages should be included and listed using identifiers, in descending order of relevance. "
)
_POST: dict[Mode, str] = {
    "reasoning": _POST_COMMON + "The format of the answer should be [] > [], e.g., [2] > [1].",
    "qwen3": _POST_COMMON + (
        "The final ranked list should be enclosed within <answer> </answer> tags, i.e., <answer> ranked list here "
        "</answer>. The format of ranked list should be [] > [], e.g., [2] > [1]. Only respond with the ranking "
        "results, do not say any word or explain."
    ),
}
"""``utils.py``: ``add_prefix_prompt`` / ``add_post_prompt`` for the two modes."""

_ANSWER = re.compile(r"<think>.*?</think>\s*<answer>(.*?)</answer>", re.DOTALL)
_BRACKETED_NUMBER = re.compile(r"\[(\d+)\]")
_THINK_CLOSE = re.compile(r"</think>", re.IGNORECASE)


def mode_for_model(model: str, default: Mode = "reasoning") -> Mode:
    """The prompt mode a released checkpoint was trained with (by hub id or its last path part),
    ``default`` for any other model."""
    if model in MODELS:
        return MODELS[model]
    tail = model.rstrip("/").rsplit("/", 1)[-1].lower()
    for hub_id, mode in MODELS.items():
        if hub_id.rsplit("/", 1)[-1].lower() == tail:
            return mode
    return default


def plan_windows(n: int, window: int = WINDOW, step: int = STEP, depth: int = DEPTH) -> list[tuple[int, int]]:
    """The ``[start, end)`` windows the released code runs, in order, for ``n`` candidates.

    As ``Reranker.rerank_batch`` and ``RankLLM.sliding_windows``: the window and the end are
    capped at ``n``; ends step down by ``step`` from ``min(depth, n)``; a start below 0 is
    clamped to 0 (and the next start is ``step`` below the clamped one); the pass stops once the
    next start would be exactly ``-step``. With fewer than 100 candidates this runs short windows
    at the top (35 candidates: ``[15, 35)``, ``[5, 25)``, ``[0, 15)``), unlike thinkrank's
    Rank-K plan, which stops at the first window that reaches the top.

    Raises:
        InvalidInputError: a value below 1.
    """
    for name, value in (("n", n), ("window", window), ("step", step), ("depth", depth)):
        if not isinstance(value, int) or isinstance(value, bool) or value < (0 if name == "n" else 1):
            raise InvalidInputError(f"{name} must be an int >= {0 if name == 'n' else 1}, got {value!r}")
    end = min(depth, n)
    window = min(window, n)
    start = end - window
    spans = []
    while end > 0 and start + step != 0:
        start = max(start, 0)
        spans.append((start, end))
        end -= step
        start -= step
    return spans


def check_mode(mode: str) -> Mode:
    """``mode`` if it is one of :data:`MODES` (raises InvalidInputError naming them)."""
    if mode not in MODES:
        raise InvalidInputError(f"unknown ReasonRank prompt mode {mode!r}: use one of {', '.join(MODES)}")
    return mode  # type: ignore[return-value]


def _fix_text(text: str, **options: Any) -> str:
    try:
        from ftfy import fix_text
    except ImportError as exc:  # a core dependency: only a broken install lacks it
        raise MissingExtraError("ReasonRank prompts need ftfy, as the released code: `pip install ftfy`") from exc
    return fix_text(text, **options)


def replace_number(text: str) -> str:
    """``[12]`` -> ``(12)``: the released rewrite of the query and of every passage."""
    return _BRACKETED_NUMBER.sub(r"(\1)", text)


def passage_content(passage: str, truncate: Callable[[str], str] | None = None) -> str:
    """One passage as the released ``convert_doc_to_prompt_content`` writes it: stripped, through
    ``fix_text``, cut by ``truncate`` (None: not cut), ``[n]`` rewritten to ``(n)``."""
    content = _fix_text(passage.strip())
    if truncate is not None:
        content = truncate(content)
    return replace_number(content)


def build_input(
    query: str,
    passages: Sequence[str],
    *,
    mode: Mode = "reasoning",
    instruction: str | None = None,
    truncate: Callable[[str], str] | None = None,
) -> ModelInput:
    """The chat for one window: a system turn and a user turn, to render with the model's own
    chat template (generation prompt on, nothing written after it).

    ``passages`` are the window's texts, best-so-far first, numbered ``[1]…`` in that order.
    ``instruction`` (not in the released code) is appended to the query after a space, as
    thinkrank does for Rank-K. ``truncate`` cuts each passage where the released code does (see
    :func:`~thinkrank.families.truncation.token_truncation`; None: passages are not cut).

    Raises:
        InvalidInputError: an empty query, no passages, a passage that is not a string, or an
            unknown mode.
    """
    mode = check_mode(mode)
    if not isinstance(query, str) or not query.strip():
        raise InvalidInputError("the query must be a non-empty string")
    if not passages:
        raise InvalidInputError("a ReasonRank window needs at least one passage")
    for i, passage in enumerate(passages):
        if not isinstance(passage, str):
            raise InvalidInputError(f"passage {i} must be a string, got {type(passage).__name__}")
    if instruction is not None and not isinstance(instruction, str):
        raise InvalidInputError(f"the instruction must be a string or None, got {type(instruction).__name__}")
    return window_chat(query, [passage_content(p, truncate) for p in passages], mode=mode, instruction=instruction)


def window_chat(query: str, contents: Sequence[str], *, mode: Mode = "reasoning", instruction: str | None = None
                ) -> ModelInput:
    """:func:`build_input` for passages already made into their released content
    (:func:`passage_content`: fixed, cut, ids rewritten), e.g. by a reranker that cut them once
    to check their length; the inputs are not checked again."""
    joined = " ".join(x.strip() for x in (query, instruction or "") if x.strip())
    q = replace_number(joined).strip()
    num = len(contents)
    body = "".join(f"[{rank}] {content}\n" for rank, content in enumerate(contents, 1))
    user = _PREFIX.format(num=num, query=q) + "\n" + body + _POST[mode].format(num=num, query=q)
    system = SYSTEM_PROMPT_REASONING if mode == "reasoning" else SYSTEM_PROMPT
    # The released fix_text over the rendered prompt, turn by turn (see the module docstring).
    return ModelInput(messages=(
        {"role": "system", "content": _fix_text(system, unescape_html=False)},
        {"role": "user", "content": _fix_text(user, unescape_html=False)},
    ))


Where = Literal["answer", "after-answer-tag", "whole-output"]


@dataclass(frozen=True)
class WindowReading:
    """Everything read from one window's output.

    ``where``: ``"answer"`` (a well-formed ``<think>…</think><answer>…</answer>``),
    ``"after-answer-tag"`` (the text after the last ``<answer>``) or ``"whole-output"`` (no
    ``<answer>`` at all: the released code then reads ids from the whole text, reasoning
    included). ``ids``: the 1-based ids in the order read; ``duplicates``, ``out_of_window``
    and ``missing`` what the released rule dropped or appended.
    """

    answer: WindowAnswer
    reasoning: str
    answer_text: str
    where: Where
    ids: tuple[int, ...]
    duplicates: tuple[int, ...] = ()
    out_of_window: tuple[int, ...] = ()
    missing: tuple[int, ...] = ()


def read_window(text: str, n: int) -> WindowReading:
    """Read a window of ``n`` passages from the model's output ``text``, as released.

    Never raises on model output. See the module docstring for the rule.

    Raises:
        InvalidInputError: ``n`` < 1.
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise InvalidInputError(f"n (the passages in the window) must be an int >= 1, got {n!r}")
    text = text if isinstance(text, str) else ""
    kept = tuple(range(n))
    no_ties = (False,) * n
    match = _ANSWER.search(text.lower())
    where: Where
    if match:
        span, where = match.group(1).strip(), "answer"
    elif "<answer>" in text:
        span, where = text.split("<answer>")[-1], "after-answer-tag"
    else:
        span, where = text, "whole-output"
    reasoning = _reasoning(text, where)
    runs = "".join(c if c.isdigit() else " " for c in span).split()
    try:
        ids = tuple(int(run) for run in runs)
    except ValueError:
        bad = next(r for r in runs if not _is_int(r))
        refused = Fallback(
            "unparsable",
            f"the answer holds {bad[:20]!r}, digits int() refuses; the window keeps its order, as released",
        )
        return WindowReading(WindowAnswer(kept, no_ties, refused), reasoning, span, where, ())
    order: list[int] = []
    duplicates: list[int] = []
    out: list[int] = []
    seen: set[int] = set()
    for pid in ids:
        if pid in seen:
            duplicates.append(pid)
            continue
        seen.add(pid)
        if 1 <= pid <= n:
            order.append(pid - 1)
        else:
            out.append(pid)
    placed = set(order)
    missing = tuple(p + 1 for p in kept if p not in placed)
    order.extend(p - 1 for p in missing)
    fallback = _fallback(where, len(missing), n, duplicates, out)
    answer = WindowAnswer(tuple(order), no_ties, fallback)
    return WindowReading(answer, reasoning, span, where, ids, tuple(duplicates), tuple(out), missing)


def parse_window(text: str, n: int) -> WindowAnswer:
    """The window order (0-based positions, best first) read from ``text``: :func:`read_window`'s answer."""
    return read_window(text, n).answer


def _is_int(run: str) -> bool:
    try:
        int(run)
    except ValueError:
        return False
    return True


def _reasoning(text: str, where: Where) -> str:
    """The chain, for traces: before the first ``</think>`` when the answer was well formed."""
    if where == "answer":
        close = _THINK_CLOSE.search(text)
        chain = text[: close.start()] if close else text
    elif where == "after-answer-tag":
        chain = text[: text.rfind("<answer>")]
    else:
        chain = text
    chain = chain.strip()
    if chain.lower().startswith("<think>"):
        chain = chain[len("<think>"):]
    return chain.replace("</think>", "").strip()


def _fallback(where: Where, missing: int, n: int, duplicates: list[int], out: list[int]) -> Fallback | None:
    notes = []
    if duplicates:
        notes.append(f"repeated ids {duplicates[:10]} kept their first place")
    if out:
        notes.append(f"ids outside 1..{n} {out[:10]} dropped")
    if missing:
        notes.append(f"{missing} of {n} ids missing, appended in window order")
    extra = ("; " + "; ".join(notes)) if notes else ""
    if where == "whole-output":
        return Fallback("no-answer", "no <answer> tag: ids read from the whole output, reasoning included, as released"
                        + extra)
    if where == "after-answer-tag":
        return Fallback("unclosed-answer", "no <think>…</think><answer>…</answer>: ids read after the last <answer>, "
                        "as released" + extra)
    if missing == n:
        return Fallback("no-ids", "the answer holds no id of the window; the window keeps its order, as released")
    if missing:
        return Fallback("missing-ids", "; ".join(notes))
    return None
