"""Convert a GGUF model to a transformers directory once, and reuse it on later runs.

transformers reads a ``.gguf`` file by de-quantizing every tensor, which takes ~20 s for a
135M model and minutes for 7B, on every load. The converted model is saved (in the dtype the
engine loads, with the tokenizer) under ``$THINKRANK_CACHE/gguf/<sha256 of the file>-<dtype>``
(default ``~/.cache/thinkrank``), so a changed file is a new entry and an unchanged one, even
moved or renamed, is found again. The file's hash is itself remembered per (path, size, mtime),
so a 4 GB file is not re-read on every run. ``THINKRANK_GGUF_CACHE=0`` turns the cache off.

The saved copy is de-quantized: about 2 bytes per parameter in bfloat16, 4 in float32.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from thinkrank.engines.loading import ModelRef
from thinkrank.errors import ModelLoadError
from thinkrank.io import write_text_atomic

_READ = 1 << 20


def cache_root() -> Path:
    env = os.environ.get("THINKRANK_CACHE")
    return (Path(env) if env else Path.home() / ".cache" / "thinkrank") / "gguf"


def enabled() -> bool:
    return os.environ.get("THINKRANK_GGUF_CACHE", "1").lower() not in ("0", "false", "no", "off")


def file_hash(path: Path, root: Path | None = None) -> str:
    """SHA-256 of ``path``, remembered in ``root/hashes.json`` by (resolved path, size, mtime)."""
    root = root or cache_root()
    stat = path.stat()
    stamp = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    index_path = root / "hashes.json"
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        index = {}
    if not isinstance(index, dict):
        index = {}
    if isinstance(index.get(stamp), str):
        return index[stamp]
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_READ):
            digest.update(chunk)
    index[stamp] = digest.hexdigest()
    root.mkdir(parents=True, exist_ok=True)
    write_text_atomic(index_path, json.dumps(index))
    return index[stamp]


def converted(ref: ModelRef, dtype: Any, *, root: Path | None = None) -> ModelRef:
    """``ref`` itself unless it is a GGUF file; then a ref to its converted directory (made on
    first use). The adapter, if any, is kept."""
    if not ref.gguf_file or not enabled():
        return ref
    root = root or cache_root()
    gguf = Path(ref.source) / ref.gguf_file
    dtype_name = str(dtype).removeprefix("torch.")
    target = root / f"{file_hash(gguf, root)}-{dtype_name}"
    if not (target / "config.json").is_file():
        try:
            _convert(gguf, target, dtype)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise ModelLoadError(
                f"could not read the GGUF file {gguf} ({type(exc).__name__}: {' '.join(str(exc).split())[:300]}); "
                "is it a complete GGUF model of an architecture transformers supports?"
            ) from exc
    return replace(ref, source=str(target), gguf_file=None)


def _convert(gguf: Path, target: Path, dtype: Any) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=dtype)
    # transformers refuses to save a model loaded from GGUF; its weights are already
    # de-quantized, so move them into a plain model of the same config.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.load_state_dict(loaded.state_dict())
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "thinkrank-source.json").write_text(json.dumps({"gguf": str(gguf.resolve())}), encoding="utf-8")
    try:
        tmp.replace(target)  # atomic: another process converting the same file at once loses the race harmlessly
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (target / "config.json").is_file():
            raise
