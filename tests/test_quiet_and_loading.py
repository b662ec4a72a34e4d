"""Quiet means quiet; a GGUF file is converted once; an unreachable hub is told at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from thinkrank.errors import ModelLoadError


def _docs(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text('{"id": "a", "text": "Cats eat meat."}\n{"id": "b", "text": "Stocks fell."}\n')
    return path


@pytest.mark.slow
def test_quiet_gguf_run_prints_only_results_and_converts_the_file_once(tmp_path):
    from thinkrank.testing import smollm2_gguf

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "THINKRANK_CACHE": str(tmp_path / "cache")}
    args = [sys.executable, "-m", "thinkrank", "rerank", "--model", str(smollm2_gguf()), "--query", "what do cats eat",
            "--docs", str(_docs(tmp_path)), "--format", "jsonl", "--reasoning", "off", "--quiet"]
    first = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    assert first.returncode == 0 and first.stderr == ""  # no bars, no FutureWarning, no logs
    converted = list((tmp_path / "cache" / "gguf").glob("*-float32"))
    assert len(converted) == 1 and (converted[0] / "config.json").is_file()
    stamp = (converted[0] / "config.json").stat().st_mtime_ns
    second = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    assert second.returncode == 0 and second.stderr == ""
    assert (converted[0] / "config.json").stat().st_mtime_ns == stamp  # reused, not converted again
    scores = [[json.loads(line)["score"] for line in p.stdout.splitlines()] for p in (first, second)]
    assert scores[0] == scores[1] and len(scores[0]) == 2
    # The key is the file's content: its SHA-256, computed independently here.
    import hashlib

    assert converted[0].name.startswith(hashlib.sha256(smollm2_gguf().read_bytes()).hexdigest())


def test_quiet_transformers_run_writes_nothing_to_stderr(smollm2_path, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "thinkrank", "rerank", "--model", str(smollm2_path), "--query", "cats", "--docs",
         str(_docs(tmp_path)), "--format", "trec", "--think-budget", "4", "--quiet"],
        capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=600,
    )
    assert proc.returncode == 0 and proc.stderr == "" and len(proc.stdout.splitlines()) == 2


def test_no_future_warning_from_the_decode_loop(smollm2_engine):
    import warnings

    from thinkrank.engines import GenerationRequest

    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        out = smollm2_engine.generate([GenerationRequest(prompt="Cats are", max_tokens=3)])
    assert out[0].num_tokens == 3


def test_an_unreachable_hub_fails_at_once_for_an_uncached_id(monkeypatch):
    from thinkrank import hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    # A reserved name (RFC 2606) never resolves: the probe fails the way a machine without network does.
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.invalid")
    assert hub.hub_reachable(timeout=3) is False
    with pytest.raises(ModelLoadError, match=r"hub\.invalid\) cannot be reached .*hf download never-loaded/model"):
        hub.local_files_only("never-loaded/model")


def test_local_model_problems_are_named_not_blamed_on_the_hub(tmp_path):
    from thinkrank.engines.loading import resolve_model

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("[1, 2")
    with pytest.raises(ModelLoadError, match="config.json is not valid JSON"):
        resolve_model(tmp_path / "m")
    (tmp_path / "weights.bin").write_bytes(b"\0")
    with pytest.raises(ModelLoadError, match="is a file but not a .gguf model"):
        resolve_model(tmp_path / "weights.bin")
