"""``thinkrank prompt`` prints, for every family, exactly the inputs the released code builds:
checked line by line against the fixtures made by running the released builders
(``tests/fixtures/families/``); with ``--model``, the rendered text and its token count."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jinja2 import Environment
from transformers import AutoTokenizer
from typer.testing import CliRunner

from thinkrank.families import rank_r1
from thinkrank.prompts.rank1 import build_rank1_prompt
from thinkrank.prompts.rankk import RANKK_PROMPT

FIXTURES = Path(__file__).parent / "fixtures" / "families"


def _load(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def app():
    from thinkrank.cli import _register, app

    _register()
    return app


@pytest.fixture(scope="module")
def qwen_tok(tiny_qwen_path):
    return AutoTokenizer.from_pretrained(tiny_qwen_path)


def prompt(app, tmp_path, family, query, docs, instruction=None, model=None) -> list[dict]:
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(docs)), encoding="utf-8")
    args = ["prompt", "--family", family, "--query", query, "--docs", str(path)]
    args += [] if instruction is None else ["--instruction", instruction]
    args += [] if model is None else ["--model", str(model)]
    result = CliRunner().invoke(app, args, env={"HF_HUB_OFFLINE": "1"})
    assert result.exit_code == 0, f"{result.output[-2000:]}\n{result.exception!r}"
    return [json.loads(line) for line in result.stdout.splitlines()]


def _groups(inputs: list[dict]) -> dict[tuple, list[dict]]:
    """Fixture inputs by (query, instruction), in their order: one command each."""
    out: dict[tuple, list[dict]] = {}
    for case in inputs:
        out.setdefault((case["query"], case["instruction"]), []).append(case)
    return out


@pytest.mark.parametrize("family,fixture", [("qwen3-reranker", "qwen3_reranker.json"), ("tfrank", "tfrank.json")])
def test_pointwise_families_print_the_released_prompts(app, tmp_path, family, fixture):
    for (query, instruction), cases in _groups(_load(fixture)["inputs"]).items():
        lines = prompt(app, tmp_path, family, query, [c["document"] for c in cases], instruction)
        assert lines == [{"prompt": c["prompt"]} for c in cases]  # one per document, byte for byte


def test_reasonrank_prints_the_released_first_window(app, tmp_path, tiny_qwen_path, qwen_tok):
    fixture = _load("reasonrank_released.json")
    render = Environment(keep_trailing_newline=True).from_string(fixture["chat_template"]).render
    uncut = [c for c in fixture["inputs"] if c["truncation"] is None]  # the cut cases use a per-character tokenizer
    for case in (c for c in uncut if c["mode"] == "reasoning"):
        (line,) = prompt(app, tmp_path, "reasonrank", case["query"], case["passages"], case["instruction"])
        assert render(messages=line["messages"], add_generation_prompt=True) == case["prompt"]
    # --model picks the prompt mode (a folder named as the released reasonrank-8B: qwen3) and renders
    model = tmp_path / "reasonrank-8B"
    model.symlink_to(tiny_qwen_path, target_is_directory=True)
    for case in (c for c in uncut if c["mode"] == "qwen3"):
        (line,) = prompt(app, tmp_path, "reasonrank", case["query"], case["passages"], case["instruction"], model)
        assert line["text"] == case["prompt"] == render(messages=line["messages"], add_generation_prompt=True)
        assert line["tokens"] == len(qwen_tok(case["prompt"]).input_ids)


def test_rank_r1_prints_the_released_first_comparison(app, tmp_path):
    for case in _load("rank_r1_released.json")["inputs"]:
        # Place the documents so that thinkrank's seeded shuffle shows them as the released run did
        shown = rank_r1.SetwiseSort(len(case["documents"])).pending.shown
        docs = [""] * len(case["documents"])
        for ours, released in zip(shown, case["shown"]):
            docs[ours] = case["documents"][released]
        (line,) = prompt(app, tmp_path, "rank-r1", case["query"], docs, case["instruction"])
        assert line == {"messages": case["messages"]}


def test_rank1_and_rank_k(app, tmp_path, tiny_qwen_path, qwen_tok):
    docs = ["A heap is a tree.", "Sorting is ordering [1]."] + [f"Note {i}." for i in range(30)]
    lines = prompt(app, tmp_path, "rank1", "what is a heap?", docs[:2], "Be strict.")
    assert lines == [{"prompt": build_rank1_prompt("what is a heap?", d, None, "Be strict.")} for d in docs[:2]]
    (line,) = prompt(app, tmp_path, "rank-k", "what is a heap?", docs, model=tiny_qwen_path)
    # the first window of the pass: the bottom 20 of 32 ([12, 32)), numbered in their given order
    block = "\n\n".join(f"[{i}] {d}" for i, d in enumerate(docs[12:32], 1))
    content = RANKK_PROMPT.replace("{query}", "what is a heap?").replace("{docs}", block)
    assert line["messages"] == [{"role": "user", "content": content}]
    text = qwen_tok.apply_chat_template(line["messages"], tokenize=False, add_generation_prompt=True)
    assert line["text"] == text and line["tokens"] == len(qwen_tok(text).input_ids)


def test_bad_family_and_no_call(app, tmp_path):
    path = tmp_path / "one.txt"
    path.write_text("only one document\n")
    result = CliRunner().invoke(app, ["prompt", "--family", "erank", "--query", "q", "--docs", str(path)])
    assert result.exit_code == 2 and "erank is not available" in result.output
    result = CliRunner().invoke(app, ["prompt", "--family", "rank-k", "--query", "q", "--docs", str(path)])
    assert result.exit_code == 0 and result.stdout == "" and "need no model call" in result.output
