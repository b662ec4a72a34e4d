"""thinkrank quantize: AWQ int4 with llm-compressor on CPU, the saved format, loading in Rank1,
score agreement with the original, restartable output, clear errors, and the CPU shim.

The model is SmolLM2-135M cut to its first two decoder layers: real trained weights (so int4
error is what it is on a real model) at a size AWQ calibrates in seconds on a CPU."""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import pytest
import torch

from thinkrank.errors import InvalidInputError, MissingExtraError, ModelLoadError
from thinkrank.prompts.rank1 import build_rank1_prompt

pytest.importorskip("llmcompressor", reason="needs the quantize extra (scripts/install.sh installs it)")

from thinkrank.quantization.runner import MARKER, QuantizeConfig, quantize  # noqa: E402

GROUP = 64  # SmolLM2's hidden size 576 is not a multiple of 128: chosen by default


@pytest.fixture(scope="module")
def small_model(tmp_path_factory, smollm2_path) -> Path:
    """SmolLM2-135M-Instruct with only its first two decoder layers."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("smol2")
    model = AutoModelForCausalLM.from_pretrained(smollm2_path, dtype=torch.float32)
    model.model.layers = model.model.layers[:2]
    model.config.num_hidden_layers = 2
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(smollm2_path).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def quantized(tmp_path_factory, small_model, data_dir):
    """One AWQ run, calibrated in-domain on SciFact training queries with BM25 passages. A
    leftover ``.partial`` folder (a killed run) is there first and must not get in the way."""
    out = tmp_path_factory.mktemp("q") / "smol2-awq"
    partial = out.with_name(out.name + ".partial")
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"half-written")
    config = QuantizeConfig(model=str(small_model), output=out, num_samples=8,
                            max_seq_length=128, dataset=data_dir / "scifact" / "train", prompt="scifact")
    seen = []
    result = quantize(config, progress=lambda done, total: seen.append((done, total)))
    return config, result, seen


# ---- the run ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_awq_run_writes_a_complete_folder_and_reports_progress(quantized):
    config, result, seen = quantized
    out = config.output
    assert not out.with_name(out.name + ".partial").exists()
    assert (out / MARKER).is_file() and (out / "tokenizer.json").is_file()
    assert result.scheme == "W4A16" and result.group_size == GROUP and not result.reused
    assert result.layers == 14  # 2 layers x (q, k, v, o, gate, up, down); lm_head stays full precision
    assert result.cpu_shim is (not torch.accelerator.is_available())
    calibration = [json.loads(line)["text"] for line in (out / "calibration.jsonl").read_text().splitlines()]
    assert len(calibration) == result.samples == 8
    assert all(t.startswith("Determine if the following passage is relevant") and t.endswith("<think>")
               for t in calibration)
    assert all("Claim: " in t for t in calibration)  # the SciFact template
    assert seen[0] == (0, 2) and seen[-1] == (2, 2)
    q = json.loads((out / "config.json").read_text())["quantization_config"]
    assert q["quant_method"] == "compressed-tensors" and q["format"] == "pack-quantized"
    weights = q["config_groups"]["group_0"]["weights"]
    assert (weights["num_bits"], weights["group_size"], weights["symmetric"], weights["type"]) == (4, GROUP, True, "int")
    assert result.size_after < result.size_before


@pytest.mark.slow
def test_the_same_settings_again_reuse_the_finished_folder(quantized):
    config, first, _ = quantized
    again = quantize(config)
    assert again.reused and again.size_after == first.size_after and again.samples == first.samples


@pytest.mark.slow
def test_saved_linear_weights_are_int4_packed_and_decode_to_the_loaded_weights(quantized, small_model):
    """Unpack the int4 values ourselves (8 per int32, low bits first, stored as q + 8) and
    dequantize with the group scales: that must be the weight transformers decompresses."""
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    config, _, _ = quantized
    with safe_open(config.output / "model.safetensors", "pt") as f:
        names = set(f.keys())
        tensors = {n: f.get_tensor(n) for n in names if ".layers.0.mlp.down_proj." in n}
    linear = [n.removesuffix(".weight_packed") for n in names if n.endswith(".weight_packed")]
    assert len(linear) == 14 and not any(n + ".weight" in names for n in linear)
    assert "lm_head.weight" in names or "model.embed_tokens.weight" in names  # head kept (tied embeddings)

    prefix = "model.layers.0.mlp.down_proj"
    packed, scale = tensors[prefix + ".weight_packed"], tensors[prefix + ".weight_scale"]
    out_features, in_features = 576, 1536
    assert packed.dtype == torch.int32 and packed.shape == (out_features, in_features // 8)
    assert scale.shape == (out_features, in_features // GROUP)
    shifts = torch.arange(8, dtype=torch.int32) * 4
    q = ((packed.unsqueeze(-1) >> shifts) & 0xF).reshape(out_features, in_features) - 8
    assert q.min() >= -8 and q.max() <= 7 and len(q.unique()) > 8  # really 4-bit codes, and using the range
    ours = (q.float().reshape(out_features, -1, GROUP) * scale.float().unsqueeze(-1)).reshape(out_features, -1)

    model = AutoModelForCausalLM.from_pretrained(config.output, dtype=torch.float32)
    with torch.no_grad():
        model(torch.tensor([[1, 2, 3]]))  # compressed-tensors decompresses on the first forward
    loaded = model.get_submodule(prefix).weight
    assert loaded.dtype == torch.float32
    torch.testing.assert_close(loaded, ours, rtol=0, atol=1e-6)


def _reference_scores(model_dir: Path, pairs: list[tuple[str, str]]) -> list[float]:
    """Reasoning-off Rank1 written out: prompt + "\\n</think>", one forward pass, p(" true") over
    p(" true") + p(" false") at the last position."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    true_id, false_id = tok.encode(" true", add_special_tokens=False), tok.encode(" false", add_special_tokens=False)
    assert len(true_id) == len(false_id) == 1
    scores = []
    with torch.no_grad():
        for query, passage in pairs:
            ids = tok(build_rank1_prompt(query, passage, "scifact") + "\n</think>", return_tensors="pt").input_ids
            logits = model(ids).logits[0, -1]
            scores.append(torch.softmax(logits[[true_id[0], false_id[0]]], dim=0)[0].item())
    return scores


def _spearman(a: list[float], b: list[float]) -> float:
    def ranks(x: list[float]) -> list[int]:
        order = sorted(range(len(x)), key=x.__getitem__)
        r = [0] * len(x)
        for rank, i in enumerate(order):
            r[i] = rank
        return r

    ra, rb = ranks(a), ranks(b)
    n = len(a)
    return 1 - 6 * sum((x - y) ** 2 for x, y in zip(ra, rb)) / (n * (n * n - 1))


@pytest.mark.slow
def test_rank1_loads_the_quantized_model_and_its_scores_agree_with_the_original(quantized, small_model, data_dir):
    """Measured (2026-11, llm-compressor 0.14.0.1, CPU): on 40 SciFact (claim, BM25 passage) pairs,
    Spearman 0.959 and |score difference| mean 0.0057, max 0.0069 (a two-layer model; the full
    SmolLM2 is in docs/quantization.md)."""
    from thinkrank.datasets import load_collection
    from thinkrank.rerankers.pointwise import Rank1
    from thinkrank.retrieval.bm25 import bm25_run

    config, _, _ = quantized
    scifact = load_collection(data_dir / "scifact")
    queries = dict(list(scifact.judged().queries.items())[:10])
    run = bm25_run(scifact, 4, queries=queries)
    pairs = [(queries[q], scifact.corpus[d].passage) for q in queries for d in run.doc_ids(q)]
    reference = _reference_scores(small_model, pairs)

    reranker = Rank1(str(config.output), engine="transformers", device="cpu", reasoning=False, prompt="scifact")
    got = [reranker.rerank(q, [p])[0].score for q, p in pairs]
    diffs = [abs(x - y) for x, y in zip(got, reference)]
    rho = _spearman(got, reference)
    print(f"int4 vs original, {len(pairs)} pairs: Spearman {rho:.4f}, "
          f"|diff| mean {sum(diffs) / len(diffs):.4f} max {max(diffs):.4f}", file=sys.stderr)
    assert rho >= 0.9
    assert max(diffs) <= 0.02
    assert any(d > 0 for d in diffs)  # it is a different (quantized) model, not the original reloaded


# ---- bad input ----------------------------------------------------------------------------------
def test_bad_settings_fail_before_any_model_loads(tmp_path):
    def check(message: str, **kw) -> None:
        with pytest.raises(InvalidInputError, match=message):
            quantize(QuantizeConfig(**{"model": "no/such-model", "output": tmp_path / "o", **kw}))

    check("--method 'gptq' is not supported", method="gptq")
    check("--bits 3 is not supported", bits=3)
    check("--group-size must be >= 1", group_size=0)
    check("--num-samples must be >= 1", num_samples=0)
    check("--calibration .*no such file", calibration=tmp_path / "missing.jsonl")
    check("at most one of --dataset and --calibration", dataset=tmp_path, calibration=tmp_path / "c.jsonl")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "weights.bin").write_bytes(b"x")
    check("exists and was not written by thinkrank quantize", output=tmp_path / "taken")


def test_a_group_size_that_does_not_divide_names_the_layers_and_one_that_fits(tmp_path, tiny_qwen_path):
    from transformers import AutoModelForCausalLM

    from thinkrank.quantization.runner import check_group_size

    with pytest.raises(InvalidInputError, match=r"--group-size 128 does not divide the input size of 12 layers: "
                       r"model\.layers\.0\.self_attn\.q_proj \(64\).*use --group-size 64"):
        quantize(QuantizeConfig(model=str(tiny_qwen_path), output=tmp_path / "o", group_size=128, num_samples=2))
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.partial").exists()
    # Without --group-size the largest that fits is chosen: 64 here (hidden size 64), 128 when it fits.
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen_path)
    assert check_group_size(model, None, ("lm_head",)) == (14, 64)
    assert check_group_size(model, 32, ("lm_head",)) == (14, 32)


def test_an_architecture_awq_has_no_mappings_for_is_refused_by_name(tmp_path, tiny_qwen_path):
    model = tmp_path / "gpt2ish"
    shutil.copytree(tiny_qwen_path, model)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "architectures": ["GPT2LMHeadModel"]}))
    with pytest.raises(InvalidInputError, match="AWQ does not support architecture 'GPT2LMHeadModel'.*Qwen2ForCausalLM"):
        quantize(QuantizeConfig(model=str(model), output=tmp_path / "o", group_size=64))


def test_an_empty_calibration_file_is_refused(tmp_path, tiny_qwen_path):
    empty = tmp_path / "cal.jsonl"
    empty.write_text('{"text": "   "}\n')
    with pytest.raises(InvalidInputError, match="holds no text"):
        quantize(QuantizeConfig(model=str(tiny_qwen_path), output=tmp_path / "o", group_size=64, calibration=empty))


def test_cli_reports_bad_input_in_one_line_with_exit_2(tmp_path, tiny_qwen_path):
    from typer.testing import CliRunner

    from thinkrank.cli import _register, app

    _register()
    result = CliRunner().invoke(app, ["quantize", "--model", str(tiny_qwen_path), "--output", str(tmp_path / "o"),
                                      "--group-size", "128", "--quiet"])
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: --group-size 128 does not divide")
    assert "Traceback" not in result.output


def test_the_cli_flags_are_the_config_declarations_with_their_help_defaults_and_ranges(tmp_path, tiny_qwen_path):
    import typer.main
    from typer.testing import CliRunner

    from thinkrank.cli import _register, app
    from thinkrank.quantization.runner import quantize_options

    _register()
    flags = {p.name: p for p in typer.main.get_command(app).commands["quantize"].params}
    assert set(flags) == set(quantize_options()) | {"verbose", "quiet"}
    for name, field in quantize_options().items():
        p = flags[name]
        assert p.help == field.declared.help.replace("[", "\\["), name  # rich markup would eat a bare "[...]"
        assert p.opts == list(field.declared.flags or ["--" + name.replace("_", "-")]), name
        assert p.required == field.required and (field.required or p.default == (
            ",".join(field.default) if isinstance(field.default, tuple) else field.default)), name
    shown = CliRunner().invoke(app, ["quantize", "--help"], env={"COLUMNS": "300"}).output
    assert "[default: 128, or the largest of 64, 32, 16 that fits]" in shown and "[default: lm_head]" in shown
    # The declared range is the check, from the command line as from Python.
    result = CliRunner().invoke(app, ["quantize", "--model", str(tiny_qwen_path), "--output", str(tmp_path / "o"),
                                      "--n-grid", "0", "--quiet"])
    assert result.exit_code == 2 and "error: --n-grid must be >= 1, got 0" in result.output


# ---- loading quantized checkpoints without their loader ------------------------------------------
def test_an_autoawq_checkpoint_on_the_transformers_engine_says_to_use_vllm(tmp_path, tiny_qwen_path):
    """The released jhu-clsp/rank1-*-awq checkpoints are AutoAWQ format: same config entry."""
    from thinkrank.rerankers.pointwise import Rank1

    model = tmp_path / "rank1-awq"
    shutil.copytree(tiny_qwen_path, model)
    config = json.loads((model / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True,
                                     "version": "gemm"}
    (model / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="AutoAWQ checkpoint.*vllm engine on a GPU.*gptqmodel"):
        Rank1(str(model), engine="transformers", device="cpu")


def test_missing_compressed_tensors_names_the_quantize_extra(tmp_path):
    from thinkrank.engines.quantized import quantized_load_error

    (tmp_path / "config.json").write_text(json.dumps({"quantization_config": {"quant_method": "compressed-tensors"}}))
    error = quantized_load_error(tmp_path, "m", ImportError("compressed-tensors>=0.15.0 is required"))
    assert isinstance(error, MissingExtraError) and 'pip install "thinkrank[quantize]"' in str(error)


# ---- the CPU shim ----------------------------------------------------------------------------------
@pytest.mark.skipif(torch.accelerator.is_available(), reason="the failure only happens without an accelerator")
def test_upstream_still_pins_on_cpu():
    """Why thinkrank/quantization/cpu_shim.py exists. When this fails, llm-compressor no longer pins
    memory without an accelerator: delete the shim and this test."""
    from llmcompressor.pipelines.cache import IntermediatesCache

    cache = IntermediatesCache(None, None)
    cache.append({"hidden_states": torch.ones(2, 3)})
    with pytest.raises(RuntimeError, match="accelerator"):
        cache.pin_memory(0)


def test_the_shim_skips_pinning_only_while_active_and_restores_it():
    from llmcompressor.pipelines.cache import IntermediatesCache

    from thinkrank.quantization.cpu_shim import cpu_pinning_disabled

    original = IntermediatesCache.__dict__["pin_memory"]
    cache = IntermediatesCache(None, None)
    value = torch.arange(6.0).reshape(2, 3)
    cache.append({"hidden_states": value})
    with cpu_pinning_disabled() as active:
        assert active is (not torch.accelerator.is_available())
        cache.pin_memory(0)
        fetched = cache.fetch(0)["hidden_states"]
        assert torch.equal(fetched, value)
    assert IntermediatesCache.__dict__["pin_memory"] is original
    assert not math.isnan(fetched.sum().item())
