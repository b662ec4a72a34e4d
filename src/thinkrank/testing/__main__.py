"""Print the path of an offline test model: ``python -m thinkrank.testing smollm2-gguf|smollm2|tiny-qwen``."""

import sys

from thinkrank.testing import smollm2_dir, smollm2_gguf, tiny_qwen_dir

_MODELS = {"smollm2-gguf": smollm2_gguf, "smollm2": smollm2_dir, "tiny-qwen": tiny_qwen_dir}

if len(sys.argv) != 2 or sys.argv[1] not in _MODELS:
    sys.exit(f"usage: python -m thinkrank.testing {{{'|'.join(_MODELS)}}}")
print(_MODELS[sys.argv[1]]())
