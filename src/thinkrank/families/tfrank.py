"""TFRank (JOHNNY-fans/TFRank): "yes(g)" / "no(g)" with a grade g of 0-4, reasoning off.

Followed: ``evaluation/run_eval.py`` (``build_completion_prompt``, ``get_next_token_probs``,
``parse_yesno``, ``parse_label``, ``deal``) and ``evaluation/eval_metrics.py`` (the merge), as run
by ``evaluation/run_eval.sh`` (``THINK_MODE=false``, ``REASONING_MODEL=true``, temperature 0,
128 new tokens). The prompt is raw text with the chat markup written by hand; the user turn is
the training data's (``datasets_example/.../rearank-msmarco-yesno-score-nothink-pointwise-qwen3``)
``<Instruct>/<Query>/<Document>`` text, since the evaluation inputs themselves are not published
(Git LFS pointers only).

Three numbers, as released:

* ``p_yes``: ``P(yes) / (P(yes) + P(no))`` at the first answer position (the last prompt
  position: the think block is closed in the prompt);
* ``grade``: the expected grade ``sum(g * P(g))`` over the tokens "0"…"4" renormalised among
  themselves, read right after the model wrote "yes(", "no(", "Yes (", … (the stop strings);
* the score: their released merge ``(grade / 4 + p_yes) / 2``.

Kept quirks: ``deal`` records only the 9th try (``try_num == 8``), whose prompt carries the
"Please directly output…" reminder, so the reminder is part of every prompt here; when no grade
marker is written the released code sets both numbers to 0.5 (merge 0.3125), and so does this
family, with a ``Fallback("no-grade")``. Fixed: the released code reads the tokens from vLLM's
top-20 list (falling back to "Yes"/"YES" and to the smallest listed log-prob minus 10 for a
missing token); here the log-probabilities of "yes", "no" and "0"…"4" are exact.
"""

from __future__ import annotations

from thinkrank.families.base import Fallback, ModelInput, PairAnswer, Source
from thinkrank.families.pair import (
    GenerationSettings,
    PairFamily,
    Reading,
    Readings,
    missing_tokens,
    softmax_share,
)

SOURCE = Source(
    repository="JOHNNY-fans/TFRank",
    commit="18765965443e1a57c5444fad5b55026a8a9d14bf",
    path="evaluation/run_eval.py:build_completion_prompt, get_next_token_probs; evaluation/eval_metrics.py:main (merge)",
)
# The README announces the models for after review; none is published at this commit (the
# evaluation ran a Qwen3-8B fine-tune, rank_results/.../tfrank-sft-grpo-qwen3-8B-nothink).
DEFAULT_MODEL: str | None = None
SYSTEM = "Based on the relevance of the Documents to the Query and the Instruct provided to complete the task."
DEFAULT_INSTRUCTION = (
    "Please judge the relevance strength between the query and the document, and directly output the "
    "relevance judgment (yes or no), followed by the relevance score in parentheses, e.g., yes(score) or "
    "no(score).\n\n\n"
    "- Relevance scores are represented by numbers from 0 to 4, with the following meanings:\n"
    "0 means completely irrelevant,\n"
    "1 means weakly relevant,\n"
    "2 means moderately relevant,\n"
    "3 means strongly relevant,\n"
    "4 means completely relevant.\n\n"
    "- For binary relevance judgment (yes or no), the rule is:\n"
    'Scores 0 and 1 are considered irrelevant and represented as "no",\n'
    'Scores 2, 3, and 4 are considered relevant and represented as "yes".'
)
REMINDER = (
    "\nPlease directly output the relevance judgment (yes or no), followed by the relevance score in "
    "parentheses, e.g., yes(score) or no(score)."
)
NO_THINK = " /no think"
ASSISTANT = "<|im_start|>assistant\n<think>\n\n</think>\n\n"
# get_next_token_probs reads the grade right after the first of these appears in the output.
GRADE_MARKERS = ("yes(", "no(", "yes (", "no (", "Yes(", "No(", "Yes (", "No (")
GRADES = ("0", "1", "2", "3", "4")
YES_NO = Reading(name="yes_no", tokens=("yes", "no"), at="prompt-end")
GRADE = Reading(name="grade", tokens=GRADES, at="after-stop")
RELEASED_DEFAULT = 0.5  # deal(): predicted_label_avg and predicted_yesno_score when nothing was read


def build(query: str, document: str, instruction: str | None = None) -> ModelInput:
    """The raw prompt for one pair; ``instruction`` replaces the text after ``<Instruct>: ``
    (None: the released grading instruction)."""
    if instruction is None:
        instruction = DEFAULT_INSTRUCTION
    user = f"<Instruct>: {instruction}\n\n\n<Query>: {query}\n\n\n<Document>: {document}" + REMINDER + NO_THINK
    return ModelInput(
        prompt="<|im_start|>system\n" + SYSTEM + "\n<|im_end|>\n<|im_start|>user\n" + user + "\n<|im_end|>\n" + ASSISTANT
    )


def merge(grade: float, p_yes: float) -> float:
    """The released merge of the expected grade and P(yes) (eval_metrics.py)."""
    return (grade / 4.0 + p_yes) / 2


def score(readings: Readings, text: str | None = None) -> PairAnswer:
    """The merged score, with ``parts`` ``grade``, ``p_yes`` and ``merged``.

    Without a grade reading (the model wrote no "yes(" or "no(" marker) the released defaults
    apply: grade 0.5, P(yes) 0.5, with a ``Fallback("no-grade")``.

    Raises:
        ValueError: a reading lacks one of its tokens (an engine that did not read them).
    """
    yes_no = readings.get(YES_NO.name, {})
    grades = readings.get(GRADE.name)
    if grades is None:
        p_yes = grade = RELEASED_DEFAULT
        fallback: Fallback | None = Fallback(
            "no-grade", f"the output has no grade marker ({', '.join(GRADE_MARKERS[:2])}, ...): released default 0.5"
        )
    else:
        for reading, values in ((YES_NO, yes_no), (GRADE, grades)):
            missing = missing_tokens(values, reading.tokens)
            if missing:
                raise ValueError(f"tfrank needs the log-probabilities of {missing} for its {reading.name!r} reading")
        p_yes = softmax_share(yes_no, YES_NO.tokens)[0]
        grade = sum(int(g) * p for g, p in zip(GRADES, softmax_share(grades, GRADES)))
        fallback = None
    merged = merge(grade, p_yes)
    answer = None if fallback is not None else ("yes" if p_yes >= 0.5 else "no")
    return PairAnswer(score=merged, fallback=fallback, parts={"grade": grade, "p_yes": p_yes, "merged": merged},
                      answer=answer)


FAMILY = PairFamily(
    name="tfrank",
    source=SOURCE,
    default_model=DEFAULT_MODEL,
    default_instruction=DEFAULT_INSTRUCTION,
    generation=GenerationSettings(reasoning=False, max_tokens=128, stop=GRADE_MARKERS, temperature=0.0),
    readings=(YES_NO, GRADE),
    build=build,
    score=score,
)
