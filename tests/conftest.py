"""Shared fixtures: the real offline models (converted once per machine) and the data folder."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA.exists():
        pytest.fail(f"the shared data folder is missing: {DATA} (it sits beside the repository in CI)")
    return DATA


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    """SmolLM2-135M-Instruct as a transformers directory (a real tiny chat LM)."""
    from thinkrank.testing import smollm2_dir

    return smollm2_dir()


@pytest.fixture(scope="session")
def tiny_qwen_path() -> Path:
    """A random-weight Qwen2-shaped model with the real Qwen2.5 tokenizer."""
    from thinkrank.testing import tiny_qwen_dir

    return tiny_qwen_dir()


@pytest.fixture(scope="session")
def smollm2_engine(smollm2_path):
    """One loaded transformers engine over SmolLM2, shared by the whole session."""
    from thinkrank.engines.transformers import TransformersEngine

    return TransformersEngine(str(smollm2_path), device="cpu")


@pytest.fixture(scope="session")
def tiny_qwen_engine(tiny_qwen_path):
    from thinkrank.engines.transformers import TransformersEngine

    return TransformersEngine(str(tiny_qwen_path), device="cpu")
