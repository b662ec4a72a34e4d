"""`thinkrank serve` refuses bad settings with one clear line (exit 2) before loading a model."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest


def serve(*args: str) -> subprocess.CompletedProcess:
    # Wide enough that the help's table does not shorten long option names (--max-instruction-chars).
    return subprocess.run([sys.executable, "-m", "thinkrank", "serve", *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"})


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--think-budget", "0"], "--think-budget must be >= 1"),  # the same check and words as rerank's
        (["--engine", "transformers", "--concurrency", "4"], "--concurrency is an option of the openai engine"),
        (["--max-documents", "2000", "--max-queue", "100"], "max_queue (100) must be >= max_documents (2000)"),
        (["--request-timeout", "0"], "request_timeout must be > 0"),
        (["--heartbeat-seconds", "0"], "heartbeat_seconds must be > 0"),
        (["--max-instruction-chars", "0"], "max_instruction_chars must be an int >= 1"),
        (["--port", "70000"], "--port must be from 0 to 65535"),
        (["--model", "/no/such/model", "--port", "0"], "model path not found"),
    ],
)
def test_bad_settings_exit_2_with_one_line(args, message):
    proc = serve(*args)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_a_port_in_use_is_refused_before_the_model_loads():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        proc = serve("--model", "/no/such/model", "--port", str(taken.getsockname()[1]))
    assert proc.returncode == 2 and "cannot listen on 127.0.0.1:" in proc.stderr


def test_help_lists_the_server_options():
    out = serve("--help").stdout
    for option in ("--model", "--mode", "--host", "--port", "--served-model-name", "--api-key", "--cache",
                   "--max-batch-size", "--max-batch-requests", "--max-wait-ms", "--max-queue", "--max-documents",
                   "--max-query-chars", "--max-document-chars", "--max-body-bytes", "--request-timeout",
                   "--max-think-budget", "--log-text", "--engine", "--engine-api-key", "--max-instruction-chars",
                   "--strict-model-name", "--cors-origin", "--heartbeat-seconds"):
        assert option in out, option
