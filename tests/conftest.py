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


def vllm_python() -> Path | None:
    """The Python of the environment with a real vLLM (scripts/install.sh builds ``.venv-vllm``;
    ``THINKRANK_VLLM_PYTHON`` names another), or None when there is none."""
    import os

    named = os.environ.get("THINKRANK_VLLM_PYTHON")
    path = Path(named) if named else REPO / ".venv-vllm" / "bin" / "python"
    return path if path.exists() else None


def require_vllm_python() -> Path:
    """:func:`vllm_python`, or skip the test; CI sets ``THINKRANK_REQUIRE_VLLM=1`` to make a
    missing vLLM environment a failure (there the real-vLLM tests must run)."""
    import os

    python = vllm_python()
    if python is None:
        message = "no vLLM environment: scripts/install.sh builds .venv-vllm (or set THINKRANK_VLLM_PYTHON)"
        if os.environ.get("THINKRANK_REQUIRE_VLLM"):
            pytest.fail(message + " (THINKRANK_REQUIRE_VLLM is set, as in CI)")
        pytest.skip(message)
    return python


def vllm_env() -> dict[str, str]:
    """Environment for processes that run vLLM's CPU build: this checkout's code, a small KV
    cache, and no pinning of its threads to cores (CI machines are shared with other work)."""
    import os

    return {"PYTHONPATH": str(REPO / "src"), "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
            "VLLM_CPU_OMP_THREADS_BIND": os.environ.get("VLLM_CPU_OMP_THREADS_BIND", "nobind"),
            "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="session")
def vllm_worker():
    """One worker process running a real vLLM for the whole session (``vllm.LLM`` needs a main
    guard, and vLLM's CPU build its own environment): tests get engines from it with
    ``vllm_worker.engine(model, **options)``, each model loaded once."""
    python = require_vllm_python()
    from thinkrank.testing.engine_worker import Worker

    worker = Worker.start(python, env=vllm_env())
    yield worker
    worker.close()
