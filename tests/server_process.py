"""Start ``thinkrank serve`` as a real process on 127.0.0.1 (any free port) for the server tests, or
serve an app built in the test process with a real uvicorn server (``serving``)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx

_LISTENING = re.compile(r"serving .* on (http://127\.0\.0\.1:\d+)")


@dataclass
class ServerProcess:
    """A running ``thinkrank serve``: its URL, the process, and everything it logged."""

    url: str
    proc: subprocess.Popen
    log_lines: list[str] = field(default_factory=list)

    @property
    def log(self) -> str:
        return "".join(self.log_lines)

    def stop(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)


def start_server(*args: str, startup_timeout: float = 180, python: str = sys.executable,
                 env: dict[str, str] | None = None) -> ServerProcess:
    """``thinkrank serve ARGS --port 0``, run by ``python`` (with ``env`` added to this process's
    environment), once it answers ``/readyz``."""
    proc = subprocess.Popen(
        [python, "-m", "thinkrank", "serve", "--port", "0", *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
    )
    lines: list[str] = []
    found: list[str] = []
    ready = threading.Event()

    def read() -> None:  # keep draining stderr so the server never blocks on a full pipe
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if not found and (m := _LISTENING.search(line)):
                found.append(m.group(1))
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(startup_timeout) or not found:
        proc.kill()
        raise RuntimeError("thinkrank serve did not start:\n" + "".join(lines))
    server = ServerProcess(found[0], proc, lines)
    deadline = time.monotonic() + startup_timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(server.url + "/readyz", timeout=5).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("thinkrank serve never became ready:\n" + server.log)


@contextmanager
def serving(app) -> Iterator[str]:
    """Run ``app`` (lifespan included) with uvicorn in a thread; yields its base URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    while httpx.get(url + "/readyz").status_code != 200:
        time.sleep(0.01)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(60)
        sock.close()
