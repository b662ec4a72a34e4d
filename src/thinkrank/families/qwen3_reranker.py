"""Qwen3-Reranker (QwenLM/Qwen3-Embedding): "yes"/"no" right after an empty think block.

Followed: the README's transformers usage, which is also the models' card
(``README.md``: ``format_instruction``, ``prefix``, ``suffix``, ``compute_logits``). The prompt
is raw text with the chat markup written by hand::

    <|im_start|>system\\n{SYSTEM}<|im_end|>\\n<|im_start|>user\\n
    <Instruct>: {instruction}\\n<Query>: {query}\\n<Document>: {document}
    <|im_end|>\\n<|im_start|>assistant\\n<think>\\n\\n</think>\\n\\n

and the score is ``P(yes) / (P(yes) + P(no))`` at the last prompt position (the released
``log_softmax`` over the two logits is the same number), read exactly.

Released variants not followed (docs/families.md says why):

* the README's vLLM usage and ``evaluation/qwen3_reranker_model.py`` put ``\\n\\n`` between the
  Instruct/Query/Document lines, render the turns with the chat template with
  ``add_generation_prompt=False`` and then append the same suffix, so ``<|im_end|>\\n`` appears
  twice before the assistant turn;
* the evaluation class defaults to the instruction "Given the user query, retrieval the relevant
  passages" where the README uses "Given a web search query, retrieve relevant passages that
  answer the query";
* the vLLM path reads the two tokens from a top-20 list and puts -10 for a missing one.

Reasoning is off by construction (the empty think block is part of the prompt); no thinking
variant is offered.
"""

from __future__ import annotations

from thinkrank.families.base import ModelInput, PairAnswer, Source
from thinkrank.families.pair import (
    GenerationSettings,
    PairFamily,
    Reading,
    Readings,
    missing_tokens,
    softmax_share,
)

SOURCE = Source(
    repository="QwenLM/Qwen3-Embedding",
    commit="f4ad0c434c0e3534494e26a4a6bdfd8ab1431968",
    path="README.md:format_instruction (Reranker Model, Transformers Usage), prefix, suffix, compute_logits",
)
DEFAULT_MODEL = "Qwen/Qwen3-Reranker-0.6B"
DEFAULT_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"
SYSTEM = (
    "Judge whether the Document meets the requirements based on the Query and the Instruct "
    'provided. Note that the answer can only be "yes" or "no".'
)
PREFIX = "<|im_start|>system\n" + SYSTEM + "<|im_end|>\n<|im_start|>user\n"
SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
YES, NO = "yes", "no"
ANSWER = Reading(name="answer", tokens=(YES, NO), at="prompt-end")


def build(query: str, document: str, instruction: str | None = None) -> ModelInput:
    """The raw prompt for one pair; ``instruction`` None means the README's default (an empty
    string is kept empty, as released)."""
    if instruction is None:
        instruction = DEFAULT_INSTRUCTION
    pair = f"<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {document}"
    return ModelInput(prompt=PREFIX + pair + SUFFIX)


def score(readings: Readings, text: str | None = None) -> PairAnswer:
    """``P(yes) / (P(yes) + P(no))`` from the exact log-probabilities at the last prompt position.

    Raises:
        ValueError: the reading lacks "yes" or "no" (an engine that did not read them).
    """
    answer = readings.get(ANSWER.name, {})
    missing = missing_tokens(answer, ANSWER.tokens)
    if missing:
        raise ValueError(f"qwen3-reranker needs the log-probabilities of {missing} at the last prompt position")
    p_yes, p_no = softmax_share(answer, ANSWER.tokens)
    return PairAnswer(score=p_yes, answer="yes" if p_yes >= p_no else "no")


FAMILY = PairFamily(
    name="qwen3-reranker",
    source=SOURCE,
    default_model=DEFAULT_MODEL,
    default_instruction=DEFAULT_INSTRUCTION,
    generation=GenerationSettings(reasoning=False, max_tokens=0),
    readings=(ANSWER,),
    build=build,
    score=score,
)
