"""Shared fixtures: the real offline models (converted once per machine) and the data folder;
the share of cores of each pytest-xdist worker (how tests are spread over them: tests/xdist_groups.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import xdist_groups

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
MAX_WORKERS = 4  # each worker holds its own models (SmolLM2 engines, servers): bounds memory on big machines
# Tests that use one of these share the session's real vLLM: they all run on one worker, so the
# session starts each vLLM engine once (its start-up is the largest fixed cost of the suite).
VLLM_FIXTURES = frozenset({"vllm_worker", "vllm_server"})


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _share_the_cores_between_workers() -> None:
    """Under xdist, give each worker its share of the cores for torch's threads (and, through the
    environment, the CLI and server subprocesses it starts): 2 workers with 2 threads each on 2
    cores would oversubscribe them. An explicit OMP_NUM_THREADS is kept."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if not workers or "OMP_NUM_THREADS" in os.environ:
        return
    threads = str(max(1, _cpus() // int(workers)))
    os.environ["OMP_NUM_THREADS"] = threads
    os.environ.setdefault("MKL_NUM_THREADS", threads)
    if "torch" in sys.modules:  # imported by a plugin before this file: set it directly too
        sys.modules["torch"].set_num_threads(int(threads))


_share_the_cores_between_workers()


def pytest_xdist_auto_num_workers(config) -> int:
    """``-n auto``: one worker per core, at most MAX_WORKERS."""
    return max(1, min(_cpus(), MAX_WORKERS))


def pytest_configure(config) -> None:
    xdist_groups.register(config)


def pytest_collection_modifyitems(config, items) -> None:
    """The vLLM tests first, and named to xdist's scheduler as one group (tests/xdist_groups.py)."""
    xdist_groups.report_vllm_tests(config, xdist_groups.vllm_first(items, VLLM_FIXTURES))


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


VLLM_SERVE_CONTEXT = 2048  # --max-model-len of the session's `vllm serve` (SmolLM2's own is 8192)


@pytest.fixture(scope="session")
def vllm_server(smollm2_path, tmp_path_factory):
    """A real ``vllm serve`` process on 127.0.0.1 over SmolLM2 (float32, context VLLM_SERVE_CONTEXT),
    one for the session: its OpenAI API at the yielded URL."""
    import os
    import socket
    import subprocess
    import time

    import httpx

    python = require_vllm_python()
    log = tmp_path_factory.mktemp("vllm-serve") / "stderr.log"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        # `python -m` rather than the `vllm` script, which looks up the distribution "vllm" (this one is "vllm-cpu")
        [str(python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(smollm2_path), "--host", "127.0.0.1",
         "--port", str(port),
         "--dtype", "float32", "--max-model-len", str(VLLM_SERVE_CONTEXT), "--generation-config", "vllm", "--block-size", "32",
         "--enable-prefix-caching"],
        # its log goes to a file: a pipe nobody reads would block the server once full
        env={**os.environ, **vllm_env()}, stdout=subprocess.DEVNULL, stderr=log.open("w"))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(url + "/v1/models", timeout=5).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(2)
    else:
        proc.kill()
        pytest.fail(f"vllm serve did not start: {log.read_text()[-3000:]}")
    yield url + "/v1"
    proc.terminate()
    proc.wait(60)
