"""Decide quickly whether a hub model id can be loaded, instead of letting the hub client retry.

Without network, ``from_pretrained("org/name")`` spends about a minute in retries before it
says the hub cannot be reached. One TCP connection attempt (a few seconds at most, usually a
failed DNS lookup in milliseconds) tells the same thing: then a cached model is loaded with
``local_files_only=True`` and a missing one fails at once with a message saying what to do.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from thinkrank.errors import ModelLoadError

PROBE_TIMEOUT = 3.0
_TRUE = ("1", "true", "yes", "on")


def looks_like_path(text: str) -> bool:
    """``./model``, ``/data/m``, ``~/m``, ``a/b/c``: a path, not an ``org/name`` hub id."""
    return text.startswith((".", "/", "~")) or os.sep in text.strip("/").replace("/", "", 1) or "\\" in text


def offline_mode() -> bool:
    return any(os.environ.get(v, "").lower() in _TRUE for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def hub_reachable(timeout: float = PROBE_TIMEOUT) -> bool:
    """One connection attempt to the hub's endpoint (``HF_ENDPOINT``, default huggingface.co)."""
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "huggingface.co", port), timeout=timeout):
            return True
    except OSError:
        return False


def is_cached(repo_id: str, filename: str = "config.json") -> bool:
    """Whether ``filename`` of ``repo_id`` is in the local hub cache."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    try:
        return isinstance(try_to_load_from_cache(repo_id, filename), str)
    except Exception:  # an id the hub client refuses: not cached
        return False


def local_files_only(repo_id: str, *, what: str = "model", filename: str = "config.json") -> bool:
    """Whether ``repo_id`` must be loaded from the local cache (no network). Fast in every case.

    Raises:
        ModelLoadError: the hub cannot be used (offline mode, or unreachable) and the model is
            not in the cache.
    """
    fix = ("Pass a local model directory or .gguf file, or download it first on a machine with internet "
           f"(`hf download {repo_id}`) and copy the cache.")
    if offline_mode():
        if is_cached(repo_id, filename):
            return True
        raise ModelLoadError(f"could not load {what} {repo_id!r}: HF_HUB_OFFLINE=1 is set and it is not in the local "
                             f"Hugging Face cache. {fix}")
    if hub_reachable():
        return False
    if is_cached(repo_id, filename):
        return True
    host = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co").hostname
    raise ModelLoadError(f"could not load {what} {repo_id!r}: the Hugging Face hub ({host}) cannot be reached from "
                         f"this machine and it is not in the local cache. {fix}")


def describe_local(path: Path) -> str | None:
    """Why a local model folder cannot be loaded, when that can be told without loading it."""
    config = path / "config.json"
    if config.is_file():
        import json

        try:
            value = json.loads(config.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return f"{config} is not valid JSON ({exc}); fix or replace the file"
        if not isinstance(value, dict):
            return f"{config} holds a {type(value).__name__}, not a JSON object; fix or replace the file"
    return None
