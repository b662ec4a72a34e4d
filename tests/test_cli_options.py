"""The reranker and engine flags are one declaration: every command that builds a reranker offers
them with the same help and refuses a bad value or combination with the same one line (exit 2),
before any model loads."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from thinkrank.cli import _register, app

_register()
COMMANDS = ("rerank", "evaluate", "serve")
# Flags whose meaning differs on purpose: serve's --reasoning/--think-budget are defaults that
# requests override, --api-key guards the server, and evaluate's --model may be left out.
OWN = {"serve": {"reasoning", "think_budget", "api_key"}, "evaluate": {"model"}}
SHARED = ("model", "mode", "reasoning", "think_budget", "cascade", "reasoning_close", "prompt", "instruction",
          "max_passage_tokens", "temperature", "seed", "window", "stride", "depth", "max_tokens", "engine",
          "base_url", "tokenizer", "concurrency", "max_retries", "timeout", "chat", "extra_body", "context_length",
          "tensor_parallel_size", "gpu_memory_utilization", "max_model_len", "device", "batch_size", "static_cache",
          "compile")


def params(command: str) -> dict[str, object]:
    import typer.main

    group = typer.main.get_command(app)
    return {p.name: p for p in group.commands[command].params}


def test_every_reranker_flag_takes_its_help_default_and_spelling_from_its_declaration():
    from thinkrank.engines import ENGINE_OPTIONS
    from thinkrank.rerankers.spec import spec_options

    declared = {c: params(c) for c in COMMANDS}
    for name, field in spec_options().items():
        for command in COMMANDS:
            if name in OWN.get(command, set()):
                continue
            p = declared[command][name]
            assert p.help == field.declared.help.replace("[", "\\[") and p.opts == list(
                field.declared.flags or ["--" + name.replace("_", "-")]), (command, name)
            assert getattr(p.default, "value", p.default) == (
                ("on" if field.default else "off") if field.kind is bool else field.default), (command, name)
    for engine, options in ENGINE_OPTIONS.items():
        for option in options:
            for command in ("rerank", "evaluate"):
                p = declared[command][option.name]
                assert p.opts == [option.flag] and engine in p.help.split(" engine:")[0].split("/"), option.name
    assert declared["serve"]["engine_api_key"].help == declared["rerank"]["api_key"].help
    assert declared["serve"]["think_budget"].default == spec_options()["think_budget"].default
    # compare (two local models, their memory measured) takes the pointwise and local-engine ones.
    compare = params("compare")
    for name in ("reasoning", "think_budget", "cascade", "reasoning_close", "prompt", "instruction",
                 "max_passage_tokens", "device", "batch_size", "static_cache", "compile"):
        assert (compare[name].help, compare[name].default) == (declared["rerank"][name].help,
                                                               declared["rerank"][name].default), name


def test_a_declared_range_is_the_cli_check_and_error(monkeypatch):
    # One place: change think_budget's declared minimum and the CLI refuses by the new limit.
    import dataclasses

    from thinkrank.rerankers import spec

    fields = dict(spec.spec_options())
    fields["think_budget"] = dataclasses.replace(
        fields["think_budget"], declared=dataclasses.replace(fields["think_budget"].declared, minimum=16))
    monkeypatch.setattr(spec, "spec_options", lambda: fields)
    code, lines = invoke("rerank", "--think-budget", "8")
    assert code == 2 and lines == ["error: --think-budget must be >= 16, got 8"], lines
    code, lines = invoke("rerank", "--max-passage-tokens", "0")
    assert code == 2 and lines == ["error: --max-passage-tokens must be >= 1, got 0"], lines


def test_an_engine_option_range_is_declared_once(monkeypatch):
    from thinkrank.engines import ENGINE_OPTIONS

    concurrency = next(o for o in ENGINE_OPTIONS["openai"] if o.name == "concurrency")
    assert concurrency.rule == ">= 1" and not concurrency.valid(0) and concurrency.valid(1)
    code, lines = invoke("rerank", "--engine", "openai", "--concurrency", "0")
    assert code == 2 and lines == ["error: --concurrency must be >= 1, got 0"], lines


def test_dtype_is_a_flag_of_the_local_engines():
    out = CliRunner().invoke(app, ["rerank", "--help"], env={"COLUMNS": "300"}).output
    assert "--dtype" in out and "vllm/transformers engine: weights and activations" in out
    code, lines = invoke("rerank", "--engine", "openai", "--dtype", "float16")
    assert code == 2 and "--dtype is an option of the vllm and transformers engine" in lines[0], lines


def test_engine_flag_help_keeps_its_bracketed_notes():
    out = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "300"}).output
    assert "[env OPENAI_BASE_URL]" in out and "[default: 8]" in out  # rich markup would eat them unescaped


def invoke(command: str, *args: str) -> tuple[int, list[str]]:
    needs = {"rerank": ["--query", "q", "--docs", "/no/such/docs.jsonl"],
             "evaluate": ["--dataset", "/no/such/dataset", "--run", "bm25", "--model", "/no/such/model"],
             "serve": ["--model", "/no/such/model", "--port", "0"]}[command]
    result = CliRunner().invoke(app, [command, *needs, *args])
    return result.exit_code, [line for line in result.output.splitlines() if line.strip()]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--engine", "openai", "--compile"],
         "error: engine option compile: --compile is an option of the transformers engine, but the engine is openai"),
        (["--engine", "openai", "--static-cache"],
         "error: engine option static_cache: --static-cache is an option of the transformers engine"),
        (["--engine", "openai", "--base-url", "http://127.0.0.1:9/v1", "--extra-body", "[1]"],
         "error: --extra-body must be a JSON object"),
        (["--engine", "openai", "--context-length", "0"], "error: --context-length must be >= 1"),
        (["--engine", "transformers", "--context-length", "4096"],
         "error: engine option context_length: --context-length is an option of the openai engine"),
        (["--cascade", "top=0"], "error: cascade top_m must be an int >= 1"),
        (["--cascade", "top=2", "--reasoning", "off"], "error: cascade needs reasoning on"),
        (["--mode", "listwise", "--cascade", "top=2"], "error: --cascade is a pointwise option (Rank1)"),
        (["--mode", "listwise", "--reasoning-close", "bare"],
         "error: --reasoning-close applies only to --mode pointwise"),
        (["--reasoning", "off", "--reasoning-close", "</answer>"], "reasoning_close='</answer>'"),
    ],
)
def test_a_bad_reranker_flag_is_the_same_one_line_error_in_every_command(command, args, message):
    code, lines = invoke(command, *args)
    assert code == 2 and len(lines) == 1 and message in lines[0], lines


@pytest.mark.parametrize("command", ["rerank", "evaluate"])
def test_flags_of_the_other_reasoning_setting_are_refused(command):
    code, lines = invoke(command, "--reasoning-close", "bare")
    assert code == 2 and lines == ["error: --reasoning-close applies with --reasoning off or --cascade (it closes the "
                                   "empty think block of a no-reasoning pass); drop it or add one of them"]
    code, lines = invoke(command, "--reasoning", "off", "--think-budget", "8")
    assert code == 2 and "--think-budget has no effect with --reasoning off" in lines[0]


def test_serve_takes_both_reasoning_settings_flags_as_requests_choose_reasoning():
    # Requests may ask for reasoning on or off: the server's budget and closing bytes both apply.
    for args in (["--reasoning", "off", "--think-budget", "8"], ["--reasoning-close", "bare"]):
        code, lines = invoke("serve", *args)
        assert code == 2 and lines == ["error: model path not found: /no/such/model"], lines


def test_evaluate_refuses_cascade_flags_without_a_model(data_dir):
    result = CliRunner().invoke(app, ["evaluate", "--dataset", str(data_dir / "dl19"), "--run", "bm25", "--cascade",
                                      "top=5", "--extra-body", "{}"])
    assert result.exit_code == 2 and "--cascade, --extra-body configure a reranker, but no --model" in result.output


def test_a_family_sets_the_mode_the_flag_checks_use():
    from thinkrank.cli import options as cli_options
    from thinkrank.errors import InvalidInputError

    # --window is a listwise flag: right for reasonrank without --mode, wrong for a pointwise family
    cli_options.check({"family": "reasonrank", "mode": cli_options.Mode.pointwise, "window": 3}, {"family", "window"})
    with pytest.raises(InvalidInputError, match="--window applies only to --mode listwise"):
        cli_options.check({"family": "qwen3-reranker", "mode": cli_options.Mode.pointwise, "window": 3},
                          {"family", "window"})
    # --seed needs sampling: reasonrank-8B samples as released, rank-k does not
    cli_options.check({"family": "reasonrank", "model": "liuwenhan/reasonrank-8B", "mode": cli_options.Mode.pointwise,
                       "seed": 1, "temperature": None}, {"family", "model", "seed"})
    with pytest.raises(InvalidInputError, match="--seed has no effect"):
        cli_options.check({"family": "rank-k", "mode": cli_options.Mode.pointwise, "seed": 1, "temperature": None},
                          {"family", "seed"})


def test_rank_r1_takes_the_setwise_flags_and_refuses_the_other_modes():
    from thinkrank.cli import options as cli_options
    from thinkrank.cli.common import Switch
    from thinkrank.errors import InvalidInputError

    pointwise = cli_options.Mode.pointwise  # the flag's default: --family rank-r1 replaces it
    cli_options.check({"family": "rank-r1", "mode": pointwise, "k": 3, "num_child": 4, "max_tokens": 8},
                      {"family", "k", "num_child", "max_tokens"})
    for name, flag in (("window", "--window"), ("think_budget", "--think-budget"), ("prompt", "--prompt")):
        with pytest.raises(InvalidInputError, match=f"{flag} applies only to --mode .*, but the mode is setwise"):
            cli_options.check({"family": "rank-r1", "mode": pointwise, name: 3}, {"family", name})
    with pytest.raises(InvalidInputError, match="--sort-k applies only to --mode setwise, but the mode is listwise"):
        cli_options.check({"family": "reasonrank", "mode": pointwise, "k": 3}, {"family", "k"})
    with pytest.raises(InvalidInputError, match="--cascade is a pointwise option"):
        cli_options.check({"mode": cli_options.Mode.setwise, "cascade": "top=2"}, {"mode", "cascade"})
    # greedy, --seed still draws the order each set is shown in; with --shuffle off it would do nothing
    cli_options.check({"family": "rank-r1", "mode": pointwise, "seed": 3, "temperature": None}, {"family", "seed"})
    with pytest.raises(InvalidInputError, match="--seed has no effect"):
        cli_options.check({"family": "rank-r1", "mode": pointwise, "seed": 3, "temperature": None,
                           "shuffle": Switch.off}, {"family", "seed", "shuffle"})
