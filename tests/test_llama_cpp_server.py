"""The openai engine against a real third-party OpenAI-compatible server: llama-cpp-python's
server (``llama-cpp-python[server]``, built from source by ``scripts/install.sh``) serving the
SmolLM2-135M GGUF on 127.0.0.1.

llama.cpp's server answers ``finish_reason: "stop"`` both for a matched stop string and for
end-of-sequence, and says nothing more. On the Rank1 prompt for "what do cats eat" SmolLM2 ends
its chains with end-of-sequence; the released code gives such a chain a forced answer, and so
must thinkrank. Expected values come from plain HTTP requests to the same server and the
released rule restated here. The engine also sends its vLLM/SGLang fields
(``skip_special_tokens``, ``spaces_between_special_tokens``), which llama.cpp must accept.
"""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from thinkrank import Rank1
from thinkrank.engines.openai import OpenAIEngine

pytest.importorskip("llama_cpp.server", reason="llama-cpp-python[server] is not installed (scripts/install.sh installs it)")

pytestmark = pytest.mark.slow

MODEL = "smollm2-gguf"
QUERY = "what do cats eat"
DOCS = [json.loads(line) for line in (Path(__file__).resolve().parents[1] / "examples" / "docs.jsonl").read_text().splitlines()]
BUDGET = 64
NO_SPECIALS = {str(i): -100 for i in range(17)}  # SmolLM2's special tokens (<|endoftext|>, <|im_end|>, …) are ids 0-16


def released_prompt(query: str, passage: str) -> str:
    """rank1.py ``return_prompt`` of github.com/orionw/rank1, restated."""
    return (
        "Determine if the following passage is relevant to the query. Answer only with 'true' or 'false'.\n"
        f"Query: {query}\nPassage: {passage}\n<think>"
    )


def released_forced(prompt: str, chain: str) -> tuple[str, str]:
    """rank1.py ``_fix_incomplete_responses``, restated: strip the end; unless it ends with
    . ! or ?, cut after the last of them (whole when none); strip; score
    ``prompt + "\\n" + chain + "\\n</think>"``."""
    text = chain.rstrip()
    if not text.endswith((".", "!", "?")):
        last = max(text.rfind("."), text.rfind("!"), text.rfind("?"))
        if last != -1:
            text = text[: last + 1]
    return text.strip(), f"{prompt}\n{text.strip()}\n</think>"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    from thinkrank.testing import smollm2_gguf

    port = _free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_gguf()), "--host", "127.0.0.1",
           "--port", str(port), "--n_ctx", "2048", "--n_threads", "2", "--model_alias", MODEL]
    # The server logs a lot: into a file, since an unread pipe would fill and stall it.
    log = tmp_path_factory.mktemp("llama") / "server.log"
    handle = log.open("wb")
    proc = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    try:
        while True:
            try:
                urllib.request.urlopen(f"{url}/models", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"llama_cpp.server did not start: {log.read_text(errors='replace')[-2000:]}")
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        handle.close()


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(f"{url}/completions", json.dumps({"model": MODEL, **body}).encode(),
                                     {"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(request, timeout=120))


def _passage(doc: dict) -> str:
    return f"{doc['title']} {doc['text']}" if doc.get("title") else doc["text"]


def _float_score(model_dir, text: str) -> float:
    """The score from a plain forward pass of SmolLM2 with the GGUF's weights de-quantized."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        lp = torch.log_softmax(model(tok(text, return_tensors="pt").input_ids).logits[0, -1], dim=-1)
    t, f = tok.encode(" true")[0], tok.encode(" false")[0]
    return float(torch.sigmoid(lp[t] - lp[f]))


def test_end_of_sequence_from_llama_cpp_is_a_forced_answer(llama_server, smollm2_path):
    engine = OpenAIEngine(MODEL, base_url=llama_server, tokenizer=str(smollm2_path), concurrency=2)
    try:
        ranking = Rank1(engine=engine, think_budget=BUDGET).rerank(QUERY, DOCS)
        assert engine.server_reports_stops() is False  # llama.cpp never says which stop matched
    finally:
        engine.close()
    eos_seen = 0
    for j in ranking:
        prompt = released_prompt(QUERY, _passage(DOCS[j.index]))
        # What the model writes, asked plainly (no stop strings): end-of-sequence ends it early.
        raw = _post(llama_server, {"prompt": prompt, "max_tokens": BUDGET, "temperature": 0})["choices"][0]
        if "</think>" in raw["text"]:
            continue  # a chain that closed by itself (not the case this test is about)
        eos_seen += raw["finish_reason"] == "stop"
        cut, forced_text = released_forced(prompt, raw["text"])
        assert j.forced and j.reasoning == cut, (raw, j)
        # llama.cpp runs the Q4_1 weights with 8-bit activations: close to, not equal to, float.
        assert j.score == pytest.approx(_float_score(smollm2_path, forced_text), abs=0.02)
        # The server's own log-probs of the two answers after the released forced text, read from
        # its top 20. SmolLM2's likeliest next token there is often end-of-sequence, which the
        # server lists no log-probs for, so its special tokens are biased away: that leaves the
        # difference log p(true) - log p(false), which is all the score depends on, unchanged.
        top = _post(llama_server, {"prompt": forced_text, "max_tokens": 1, "temperature": 0, "logprobs": 20,
                                   "logit_bias": NO_SPECIALS})
        values = top["choices"][0]["logprobs"]["top_logprobs"][0]
        if " true" in values and " false" in values:
            expected = 1 / (1 + math.exp(values[" false"] - values[" true"]))
            assert j.score == pytest.approx(expected, abs=1e-4)
    assert eos_seen >= 1  # the end-of-sequence case was exercised (measured: d4 writes "\nTrue\nFalse")
