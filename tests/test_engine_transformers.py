"""The transformers engine against transformers' own generate and plain forward passes."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from thinkrank.engines import GenerationRequest, load_engine
from thinkrank.engines.loading import resolve_model
from thinkrank.errors import InvalidInputError, ModelLoadError

from tolerances import LAYOUT_LOGPROB_TOL, LAYOUT_TOL

PROMPTS = [
    "The capital of France is",
    "Write one sentence about the sea, then stop. The sea",
    "1, 2, 3, 4,",
]
FEW_SHOT = "Q: capital of Italy?\n<think>Rome.</think>\nQ: capital of Spain?\n<think>Madrid.</think>\nQ: capital of France?\n<think>"


@pytest.fixture(scope="module")
def hf(smollm2_path):
    tok = AutoTokenizer.from_pretrained(smollm2_path)
    model = AutoModelForCausalLM.from_pretrained(smollm2_path, dtype=torch.float32).eval()
    return tok, model


def test_greedy_generation_matches_transformers_generate(smollm2_engine, hf):
    tok, model = hf
    got = smollm2_engine.generate([GenerationRequest(p, 20) for p in PROMPTS])
    for prompt, gen in zip(PROMPTS, got):
        ids = tok(prompt, return_tensors="pt").input_ids
        ref = model.generate(ids, max_new_tokens=20, do_sample=False)[0, ids.shape[1]:].tolist()
        if ref and ref[-1] == tok.eos_token_id:
            ref = ref[:-1]
            assert gen.stop_reason == "eos"
        else:
            assert gen.stop_reason == "length" and gen.num_tokens == 20
        assert gen.text == tok.decode(ref)
        assert gen.prompt_tokens == ids.shape[1]


def test_stop_string_ends_generation_and_answer_logprobs_come_from_the_same_pass(smollm2_engine, hf):
    tok, model = hf
    answer_ids = tuple(tok.encode(w, add_special_tokens=False)[0] for w in ("\n", "Q"))
    gen = smollm2_engine.generate([GenerationRequest(FEW_SHOT, 12, ("</think>",), answer_token_ids=answer_ids)])[0]
    assert gen.stop_reason == "stop" and gen.text == "Paris."
    assert gen.answer_logprobs is not None
    # Reference: one plain forward over the prompt and the generated tokens (which end in the stop string).
    ids = tok(FEW_SHOT, return_tensors="pt").input_ids
    full = torch.cat([ids, torch.tensor([gen.token_ids])], dim=1)
    assert tok.decode(gen.token_ids).endswith("</think>")
    with torch.no_grad():
        ref = torch.log_softmax(model(full).logits[0, -1].float(), dim=-1)
    for t in answer_ids:
        assert gen.answer_logprobs[t] == pytest.approx(float(ref[t]), abs=LAYOUT_LOGPROB_TOL)


def test_next_token_logprobs_are_exact_full_softmax_values(smollm2_engine, hf):
    tok, model = hf
    ids = [tok.encode(w, add_special_tokens=False)[0] for w in (" Paris", " London", " the")]
    got = smollm2_engine.next_token_logprobs(PROMPTS, ids)
    for prompt, lp in zip(PROMPTS, got):
        with torch.no_grad():
            ref = torch.log_softmax(model(tok(prompt, return_tensors="pt").input_ids).logits[0, -1].float(), dim=-1)
        for t in ids:
            assert lp[t] == pytest.approx(float(ref[t]), abs=LAYOUT_LOGPROB_TOL)


def test_dtype_bfloat16_loads_bfloat16_weights_and_scores_like_a_bfloat16_forward_pass(smollm2_path, hf):
    from thinkrank.engines.transformers import TransformersEngine

    tok, _ = hf
    engine = TransformersEngine(str(smollm2_path), device="cpu", dtype="bfloat16")
    assert {p.dtype for p in engine.model.parameters()} == {torch.bfloat16}
    reference = AutoModelForCausalLM.from_pretrained(smollm2_path, dtype=torch.bfloat16).eval()
    ids = [tok.encode(w, add_special_tokens=False)[0] for w in (" Paris", " London")]
    with torch.no_grad():
        ref = torch.log_softmax(reference(tok(PROMPTS[0], return_tensors="pt").input_ids).logits[0, -1].float(), dim=-1)
    got = engine.next_token_logprobs(PROMPTS[:1], ids)[0]
    for t in ids:
        assert got[t] == pytest.approx(float(ref[t]), abs=0.05)  # bfloat16 rounding, not a different model
    assert TransformersEngine(str(smollm2_path), device="cpu", dtype="auto").model.dtype == torch.float32


def test_an_unknown_dtype_names_the_choices(smollm2_path):
    from thinkrank.engines.transformers import TransformersEngine

    with pytest.raises(InvalidInputError, match="dtype must be auto, bfloat16, float16, float32; got 'fp8'"):
        TransformersEngine(str(smollm2_path), device="cpu", dtype="fp8")


def test_zero_budget_and_bad_budget(smollm2_engine):
    gen = smollm2_engine.generate([GenerationRequest("Hello", 0)])[0]
    assert (gen.text, gen.stop_reason, gen.num_tokens) == ("", "length", 0)
    with pytest.raises(InvalidInputError, match="max_tokens"):
        smollm2_engine.generate([GenerationRequest("Hello", -1)])


def test_chat_messages_are_rendered_with_the_models_template_then_the_assistant_prefix(smollm2_engine, hf):
    tok, _ = hf
    messages = ({"role": "user", "content": "Name a colour."},)
    text = tok.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True) + "<think>\n"
    got, ref = smollm2_engine.generate([GenerationRequest("", 8, messages=messages, assistant_prefix="<think>\n"),
                                        GenerationRequest(text, 8)])
    assert (got.text, got.token_ids, got.stop_reason) == (ref.text, ref.token_ids, ref.stop_reason)
    assert got.prompt_tokens == ref.prompt_tokens == len(tok(text).input_ids)
    with pytest.raises(InvalidInputError, match="not both"):
        GenerationRequest("Hello", 8, messages=messages)
    with pytest.raises(InvalidInputError, match="assistant_prefix"):
        GenerationRequest("Hello", 8, assistant_prefix="<think>\n")


def test_unknown_engine_name_is_a_clear_error():
    with pytest.raises(InvalidInputError, match="unknown engine 'tensorrt'.*transformers"):
        load_engine("x", "tensorrt")


def test_model_references_resolve_or_fail_clearly(tmp_path, smollm2_path):
    assert resolve_model(smollm2_path).source == str(smollm2_path)
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    ref = resolve_model(gguf)
    assert (ref.source, ref.gguf_file) == (str(tmp_path), "m.gguf")
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text('{"base_model_name_or_path": "org/base"}')
    assert resolve_model(tmp_path / "adapter").adapter == str(tmp_path / "adapter")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="without config.json"):
        resolve_model(tmp_path / "empty")
    with pytest.raises(ModelLoadError, match="not found"):
        resolve_model(tmp_path / "missing" / "x.gguf")
    with pytest.raises(ModelLoadError, match="not found"):
        resolve_model("./no/such/dir")


def test_unreachable_hub_model_names_the_fix():
    # The hub's offline switch is read at import time, so this runs in a fresh interpreter.
    import os
    import subprocess
    import sys

    code = (
        "from thinkrank.engines import load_engine\n"
        "try:\n    load_engine('jhu-clsp/rank1-0.5b', 'transformers')\n"
        "except Exception as exc:\n    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"}).stdout
    assert out.startswith("ModelLoadError could not load model 'jhu-clsp/rank1-0.5b': HF_HUB_OFFLINE=1 is set")
    assert "Pass a local model directory or .gguf file" in out


@pytest.mark.slow
def test_gguf_file_loads_and_scores_like_the_converted_directory(smollm2_engine):
    from thinkrank import Rank1
    from thinkrank.testing import smollm2_gguf

    docs = ["Cats are felines.", "Stocks fell."]
    from_gguf = Rank1(str(smollm2_gguf()), engine="transformers", reasoning=False).rerank("cats", docs)
    from_dir = Rank1(engine=smollm2_engine, reasoning=False).rerank("cats", docs)
    assert [j.doc_id for j in from_gguf] == [j.doc_id for j in from_dir]
    assert [j.score for j in from_gguf] == pytest.approx([j.score for j in from_dir], abs=LAYOUT_TOL)
