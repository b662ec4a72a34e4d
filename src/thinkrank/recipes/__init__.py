"""One-command training recipes: data, targets, training, evaluation and a model card, each
stage an inspectable file in the run folder and skipped when its output exists.

    >>> from thinkrank.recipes import RecipeConfig, run_recipe
    >>> run_recipe(RecipeConfig(model="models/smollm2", data="../shared/data/scifact", output="runs/scifact"))
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"RecipeConfig": "config", "run_recipe": "scifact", "RecipeResult": "scifact"}
__all__ = ["RecipeConfig", "RecipeResult", "run_recipe"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"thinkrank.recipes.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'thinkrank.recipes' has no attribute {name!r}")
