"""How pytest-xdist spreads the suite over its workers (pyproject's addopts: ``-n auto --dist loadscope``).

Each module runs whole on one worker, so its module-scoped fixtures (servers, trained and
quantized models, Chromium) are built once. Every test that uses the real vLLM runs on one
worker, first, whatever its module: the session then starts each vLLM engine once, and the
longest group does not start last.

xdist's own ``--dist loadgroup`` does this from ``xdist_group`` marks by rewriting node ids,
which pytest 9.2 no longer allows (pytest-xdist issue 1386: the marks are silently ignored). So
the workers write the node ids of the vLLM tests to a file the controller's scheduler reads.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from xdist.scheduler import LoadScopeScheduling

VLLM_GROUP = "vllm"
_KEY = "thinkrank_groups_dir"


def vllm_first(items: list[pytest.Item], vllm_fixtures: frozenset[str]) -> list[str]:
    """Sort ``items`` so the vLLM tests come first (stable otherwise); their node ids."""
    items.sort(key=lambda item: vllm_fixtures.isdisjoint(item.fixturenames))
    return [item.nodeid for item in items if not vllm_fixtures.isdisjoint(item.fixturenames)]


class ModuleScheduling(LoadScopeScheduling):
    """loadscope by module, with the vLLM tests (named by the workers) as one scope."""

    def __init__(self, config: pytest.Config, log, groups_dir: Path) -> None:
        super().__init__(config, log)
        self._dir = groups_dir
        self._vllm: frozenset[str] | None = None

    def _split_scope(self, nodeid: str) -> str:
        if self._vllm is None:  # read once, after every worker has collected (schedule() runs then)
            self._vllm = frozenset(n for f in self._dir.glob("*.json") for n in json.loads(f.read_text()))
        return VLLM_GROUP if nodeid in self._vllm else nodeid.split("::", 1)[0]


class Controller:
    """The controller's side: a folder for the workers' lists, and the scheduler that reads them."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="thinkrank-xdist-"))

    def pytest_configure_node(self, node) -> None:
        node.workerinput[_KEY] = str(self.dir)

    def pytest_xdist_make_scheduler(self, config: pytest.Config, log) -> ModuleScheduling:
        return ModuleScheduling(config, log, self.dir)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def register(config: pytest.Config) -> None:
    """Install the controller's side (in the process that runs xdist's workers)."""
    if config.pluginmanager.hasplugin("xdist") and not hasattr(config, "workerinput"):
        config.pluginmanager.register(Controller(), "thinkrank-xdist-groups")


def report_vllm_tests(config: pytest.Config, nodeids: list[str]) -> None:
    """On a worker: write the node ids of its vLLM tests for the controller's scheduler."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput and _KEY in workerinput:
        path = Path(workerinput[_KEY]) / f"{workerinput['workerid']}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(nodeids))
        os.replace(tmp, path)
