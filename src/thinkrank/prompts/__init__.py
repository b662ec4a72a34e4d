"""Prompt templates: the Rank1 pointwise prompt, the paper's dataset templates, Rank-K."""

from thinkrank.prompts.rank1 import (
    DATASET_TEMPLATES,
    RANK1_PROMPT,
    Rank1Prompt,
    build_rank1_prompt,
    resolve_template,
)

__all__ = ["DATASET_TEMPLATES", "RANK1_PROMPT", "Rank1Prompt", "build_rank1_prompt", "resolve_template"]
