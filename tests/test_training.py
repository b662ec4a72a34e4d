"""LoRA SFT (thinkrank.training): token layout, think tokens, paper defaults, a real training run
whose merged model equals base + adapter, resume after an interruption, and learning on a
held-out task."""

from __future__ import annotations

import json
import random
import shutil

import pytest
import torch

from thinkrank.errors import InvalidInputError
from thinkrank.prompts.rank1 import build_rank1_prompt
from thinkrank.rerankers.pointwise import Rank1
from thinkrank.training import TrainConfig, train
from thinkrank.training.data import IGNORE, SFTExample, read_sft, tokenize, tokenize_all, without_reasoning
from thinkrank.training.model import THINK_TOKENS, load_base

pytest.importorskip("peft")


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture()
def qwen_tok(tiny_qwen_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_qwen_path)


# ---- data -------------------------------------------------------------------------------------
def test_with_a_chain_the_prompt_is_encoded_alone_and_only_the_completion_is_learned(qwen_tok):
    prompt = build_rank1_prompt("what do cats eat", "Cats eat fish.")
    ex = SFTExample(prompt, "Cats are carnivores.\n</think> true")
    row = tokenize(qwen_tok, ex)
    context = qwen_tok(prompt)["input_ids"]
    chain = qwen_tok("Cats are carnivores.\n</think>", add_special_tokens=False)["input_ids"]
    answer = qwen_tok(" true", add_special_tokens=False)["input_ids"]
    assert answer == [830]  # the token Rank1 scores
    assert row["input_ids"] == context + chain + answer + [qwen_tok.eos_token_id]
    assert row["labels"] == [IGNORE] * len(context) + chain + answer + [qwen_tok.eos_token_id]
    assert row["answer_at"] == len(context) + len(chain)  # where " true" sits: its loss is logged apart


def test_with_reasoning_off_the_close_joins_the_input_as_rank1_encodes_it(qwen_tok):
    prompt = build_rank1_prompt("what do cats eat", "Cats eat fish.")
    ex = without_reasoning(SFTExample(prompt, "Some long chain.\n</think> false", "false"))
    assert ex.completion == "\n</think> false"
    row = tokenize(qwen_tok, ex)
    context = qwen_tok(prompt + "\n</think>")["input_ids"]  # what Rank1(reasoning=False) feeds the model
    assert row["input_ids"][: len(context)] == context
    assert row["labels"] == [IGNORE] * len(context) + [895, qwen_tok.eos_token_id]  # " false"
    assert row["input_ids"][row["answer_at"]] == 895
    assert tokenize(qwen_tok, SFTExample(prompt, "no answer here"))["answer_at"] == -1


def test_examples_over_the_cutoff_are_left_out_and_counted_never_cut(qwen_tok):
    short = SFTExample("Query: a\n<think>", "ok\n</think> true")
    long = SFTExample("Query: " + "word " * 300 + "\n<think>", "ok\n</think> false")
    data = tokenize_all(qwen_tok, [short, long, short], cutoff_len=64)
    assert len(data.rows) == 2 and data.too_long == 1 and data.longest > 300
    with pytest.raises(InvalidInputError, match="raise --cutoff-len"):
        tokenize_all(qwen_tok, [long], cutoff_len=64)


def test_bad_training_files_say_what_is_wrong(tmp_path):
    with pytest.raises(InvalidInputError, match=r"bad\.jsonl:2: .*'prompt' and 'completion'"):
        read_sft(_write(tmp_path / "bad.jsonl", [{"prompt": "p", "completion": "c"}, {"prompt": "p"}]))
    with pytest.raises(InvalidInputError, match="no training examples"):
        read_sft(_write(tmp_path / "empty.jsonl", []))
    with pytest.raises(InvalidInputError, match="reasoning off needs"):
        without_reasoning(SFTExample("p", "a chain with no verdict"))
    config = TrainConfig(model="x", data=tmp_path / "missing.jsonl", output=tmp_path / "out")
    with pytest.raises(InvalidInputError, match="distill filter"):
        config.validate()
    with pytest.raises(InvalidInputError, match="lora_rank"):
        TrainConfig(model="x", data=tmp_path / "empty.jsonl", output=tmp_path / "o", lora_rank=0).validate()


def test_defaults_are_the_papers_hyper_parameters(tmp_path):
    c = TrainConfig(model="Qwen/Qwen2.5-7B", data=tmp_path / "d.jsonl", output=tmp_path / "o")
    assert (c.lora_rank, c.lora_alpha, c.target_modules) == (32, 64, "all-linear")
    assert (c.learning_rate, c.batch_size, c.epochs, c.warmup_ratio, c.scheduler) == (1e-4, 128, 2.0, 0.05, "cosine")
    assert c.cutoff_len == 2500 and c.dtype == "auto" and c.think_tokens


# ---- model ------------------------------------------------------------------------------------
def test_think_tokens_become_single_tokens_started_at_their_old_pieces(tiny_qwen_path, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base_tok = AutoTokenizer.from_pretrained(tiny_qwen_path)
    base = AutoModelForCausalLM.from_pretrained(tiny_qwen_path)
    config = TrainConfig(model=str(tiny_qwen_path), data=tmp_path / "d", output=tmp_path / "o")
    model, tok, ids = load_base(config, torch.float32)
    assert [tok(t, add_special_tokens=False)["input_ids"] for t in THINK_TOKENS] == [[i] for i in ids]
    table = model.get_input_embeddings().weight
    # the table was padded past the vocabulary: the new ids reuse unused rows and it keeps its size
    assert len(tok) <= table.shape[0] == base.get_input_embeddings().weight.shape[0]
    for token, new_id in zip(THINK_TOKENS, ids):
        pieces = base_tok(token, add_special_tokens=False)["input_ids"]
        assert len(pieces) > 1
        expected = base.get_input_embeddings().weight[pieces].mean(0)
        assert torch.allclose(table[new_id], expected)
    # old rows are untouched
    assert torch.equal(table[:1000], base.get_input_embeddings().weight[:1000])


# ---- a real run -------------------------------------------------------------------------------
def _toy_data(path, n=12):
    rows = []
    for i in range(n):
        rel = i % 2 == 0
        prompt = build_rank1_prompt(f"query {i}", "A passage about cats." if rel else "A passage about taxes.")
        rows.append({"prompt": prompt, "completion": f"Thinking about it.\n</think> {'true' if rel else 'false'}"})
    return _write(path, rows)


def _tiny_config(model, data, output, **kw):
    kw = {"lora_rank": 4, "lora_alpha": 8, "batch_size": 4, "micro_batch_size": 2, "max_steps": 3,
          "learning_rate": 1e-3, "save_steps": 1, "save_total_limit": 5, **kw}
    return TrainConfig(model=str(model), data=data, output=output, **kw)


@pytest.fixture(scope="module")
def trained(tiny_qwen_path, tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    config = _tiny_config(tiny_qwen_path, _toy_data(root / "train.jsonl"), root / "run")
    return config, train(config, progress=False)


def test_a_run_writes_adapter_merged_model_checkpoints_and_a_loss_log(trained):
    config, result = trained
    assert result.steps == 3 and result.examples == 12 and result.too_long == 0
    log = [json.loads(line) for line in (config.output / "loss.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3] and all(r["loss"] > 0 for r in log)
    assert result.final_loss == log[-1]["loss"]
    assert (result.adapter / "adapter_config.json").exists() and (result.model / "config.json").exists()
    assert sorted(p.name for p in (config.output / "checkpoints").glob("checkpoint-*")) == \
        ["checkpoint-1", "checkpoint-2", "checkpoint-3"]
    saved = json.loads((config.output / "train_config.json").read_text())
    assert saved["lora_rank"] == 4 and json.loads((config.output / "result.json").read_text())["steps"] == 3


def test_the_adapter_changed_the_model_and_merging_keeps_its_function(trained, tiny_qwen_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config, result = trained
    tok = AutoTokenizer.from_pretrained(result.adapter)
    ids = tok([build_rank1_prompt("cats", "Cats purr.") + "ok\n</think>"], return_tensors="pt")
    base = AutoModelForCausalLM.from_pretrained(tiny_qwen_path)
    assert len(tok) <= base.get_input_embeddings().weight.shape[0]  # new ids fit the padded table
    with torch.no_grad():
        peft_logits = PeftModel.from_pretrained(base, result.adapter).eval()(**ids).logits
        merged_logits = AutoModelForCausalLM.from_pretrained(result.model).eval()(**ids).logits
        plain = AutoModelForCausalLM.from_pretrained(tiny_qwen_path).eval()
        base_logits = plain(**AutoTokenizer.from_pretrained(tiny_qwen_path)(
            [build_rank1_prompt("cats", "Cats purr.") + "ok\n</think>"], return_tensors="pt")).logits
    assert torch.allclose(peft_logits, merged_logits, atol=1e-4)
    assert not torch.allclose(merged_logits[0, -1, :1000], base_logits[0, -1, :1000], atol=1e-3)


def test_rank1_loads_the_merged_model_and_base_plus_adapter_alike(trained):
    _, result = trained
    docs = ["Cats purr when happy.", "Taxes are due in April."]
    merged = Rank1(str(result.model), reasoning=False).rerank("cats", docs)
    adapted = Rank1(str(result.adapter), reasoning=False).rerank("cats", docs)
    assert [j.doc_id for j in merged] == [j.doc_id for j in adapted]
    for a, b in zip(merged, adapted):
        assert a.score == pytest.approx(b.score, abs=1e-4)


def test_an_interrupted_run_resumes_from_its_checkpoint_and_ends_where_an_uninterrupted_one_does(trained, tmp_path):
    from safetensors.torch import load_file

    config, result = trained
    # The run "died" after step 2: the step-3 checkpoint and the outputs never got written.
    run = tmp_path / "run"
    shutil.copytree(config.output, run)
    for leftover in ("checkpoints/checkpoint-3", "adapter", "model", "result.json"):
        shutil.rmtree(run / leftover) if (run / leftover).is_dir() else (run / leftover).unlink()
    log = (run / "loss.jsonl").read_text().splitlines()
    (run / "loss.jsonl").write_text("\n".join(log[:2]) + "\n")
    resumed = train(_tiny_config(config.model, config.data, run), progress=False)
    assert resumed.resumed_from.endswith("checkpoint-2") and resumed.steps == 3
    assert [json.loads(x)["step"] for x in (run / "loss.jsonl").read_text().splitlines()] == [1, 2, 3]
    first = load_file(result.adapter / "adapter_model.safetensors")
    second = load_file(resumed.adapter / "adapter_model.safetensors")
    assert first.keys() == second.keys()
    for key in first:
        assert torch.allclose(first[key], second[key], atol=1e-6), key


def test_the_answer_tokens_own_loss_is_logged_and_equals_a_plain_forward_pass(tiny_qwen_path, tmp_path):
    """Step 1 sees every example before any update, so its answer_loss is the base model's mean
    cross-entropy on the answer token, computed here from a plain forward pass."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    data = _toy_data(tmp_path / "d.jsonl", n=6)
    train(_tiny_config(tiny_qwen_path, data, tmp_path / "run", think_tokens=False, batch_size=6,
                       micro_batch_size=2, max_steps=1), progress=False)
    logged = json.loads((tmp_path / "run" / "loss.jsonl").read_text().splitlines()[0])
    tok = AutoTokenizer.from_pretrained(tiny_qwen_path)
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen_path).eval()
    losses = []
    for row in map(json.loads, data.read_text().splitlines()):
        chain, answer = row["completion"].rsplit(" ", 1)
        ids = tok(row["prompt"])["input_ids"] + tok(chain, add_special_tokens=False)["input_ids"]
        target = tok(" " + answer, add_special_tokens=False)["input_ids"][0]
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0, -1]
        losses.append(torch.nn.functional.cross_entropy(logits[None], torch.tensor([target])).item())
    assert logged["answer_loss"] == pytest.approx(sum(losses) / len(losses), abs=1e-4)
    assert logged["answer_loss"] != pytest.approx(logged["loss"], abs=1e-3)  # not the all-token loss


def test_resuming_with_other_settings_is_refused(trained, tmp_path):
    config, _ = trained
    run = tmp_path / "run"
    shutil.copytree(config.output, run)
    with pytest.raises(InvalidInputError, match="learning_rate"):
        train(_tiny_config(config.model, config.data, run, learning_rate=5e-4), progress=False)


def test_a_run_saved_before_a_setting_existed_resumes_under_that_settings_default(trained, tmp_path):
    config, _ = trained
    run = tmp_path / "run"
    shutil.copytree(config.output, run)
    shutil.rmtree(run / "checkpoints" / "checkpoint-3")
    saved = json.loads((run / "train_config.json").read_text())
    del saved["finetune"]  # train_config.json as written before full fine-tuning existed
    (run / "train_config.json").write_text(json.dumps(saved))
    resumed = train(_tiny_config(config.model, config.data, run), progress=False)
    assert resumed.resumed_from.endswith("checkpoint-2") and resumed.steps == 3
    with pytest.raises(InvalidInputError, match="finetune"):
        shutil.rmtree(run / "checkpoints" / "checkpoint-3")
        train(_tiny_config(config.model, config.data, run, finetune="full"), progress=False)


# ---- full fine-tuning ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fully_trained(tiny_qwen_path, tmp_path_factory):
    root = tmp_path_factory.mktemp("full")
    config = _tiny_config(tiny_qwen_path, _toy_data(root / "train.jsonl"), root / "run", finetune="full",
                          dtype="bfloat16", max_steps=2)
    return config, train(config, progress=False)


def _weights(folder):
    from safetensors.torch import load_file

    return {k: v for f in sorted(folder.glob("*.safetensors")) for k, v in load_file(f).items()}


def test_full_fine_tuning_trains_every_weight_in_float32_and_writes_only_the_model(fully_trained, tiny_qwen_path):
    config, result = fully_trained
    assert result.adapter is None and not (config.output / "adapter").exists()
    assert (result.model / "config.json").is_file() and (result.model / "tokenizer_config.json").is_file()
    base, tuned = _weights(tiny_qwen_path), _weights(result.model)
    # bfloat16 passes, float32 weights: updates of a fraction of a weight's size are kept.
    assert {v.dtype for v in tuned.values()} == {torch.float32}
    changed = {k for k in base if k in tuned and k != "model.embed_tokens.weight" and not torch.equal(base[k], tuned[k])}
    # Norms and attention, not only the linear layers LoRA adapts; k_proj's bias gets no gradient
    # (it shifts every score of a query alike, which softmax ignores).
    assert {k for k in base if k != "model.embed_tokens.weight" and not k.endswith("k_proj.bias")} <= changed
    assert any(k.endswith("norm.weight") for k in changed)
    grown = tuned["model.embed_tokens.weight"]  # <think>/</think> were added: the table grew or reused padding
    assert grown.shape[0] >= base["model.embed_tokens.weight"].shape[0]


def test_the_fully_trained_model_loads_in_rank1_as_a_plain_forward_pass_scores_it(fully_trained):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, result = fully_trained
    docs = ["Cats purr when happy.", "Taxes are due in April."]
    ranking = Rank1(str(result.model), reasoning=False, device="cpu").rerank("cats", docs)
    tok = AutoTokenizer.from_pretrained(result.model)
    model = AutoModelForCausalLM.from_pretrained(result.model).eval()
    true_id, false_id = (tok(t, add_special_tokens=False)["input_ids"][0] for t in (" true", " false"))
    for judgment in ranking:
        ids = tok(build_rank1_prompt("cats", docs[judgment.index]) + "\n</think>", return_tensors="pt")
        with torch.no_grad():
            logits = model(**ids).logits[0, -1]
        expected = torch.softmax(logits[[true_id, false_id]], 0)[0].item()
        assert judgment.score == pytest.approx(expected, abs=1e-5)


def test_an_interrupted_full_fine_tuning_resumes_and_ends_where_an_uninterrupted_one_does(fully_trained, tmp_path):
    config, result = fully_trained
    run = tmp_path / "run"
    shutil.copytree(config.output, run)
    for leftover in ("checkpoints/checkpoint-2", "model", "result.json"):
        shutil.rmtree(run / leftover) if (run / leftover).is_dir() else (run / leftover).unlink()
    resumed = train(_tiny_config(config.model, config.data, run, finetune="full", dtype="bfloat16", max_steps=2),
                    progress=False)
    assert resumed.resumed_from.endswith("checkpoint-1") and resumed.steps == 2 and resumed.adapter is None
    first, second = _weights(result.model), _weights(resumed.model)
    assert first.keys() == second.keys()
    for key in first:
        assert torch.allclose(first[key], second[key], atol=1e-6), key


def test_an_unknown_finetune_method_is_refused_with_the_choices(tmp_path, tiny_qwen_path):
    config = _tiny_config(tiny_qwen_path, _toy_data(tmp_path / "d.jsonl"), tmp_path / "run", finetune="qlora")
    with pytest.raises(InvalidInputError, match="finetune must be lora or full, got 'qlora'"):
        train(config, progress=False)


# ---- learning ---------------------------------------------------------------------------------
ANIMALS = ["the elephant", "the tiger", "the dolphin", "the eagle", "the frog", "the wolf", "the rabbit",
           "the horse", "the shark", "the parrot", "the camel", "the bear"]
CITIES = ["Paris", "Tokyo", "Madrid", "Chicago", "Cairo", "Berlin", "Sydney", "Toronto", "Lima", "Oslo",
          "Mumbai", "Rome"]
SENTENCES = {
    True: ["{x} lives in the wild and hunts for food.", "{x} is an animal with strong legs.",
           "Scientists study how {x} raises its young."],
    False: ["{x} is a large city with many busy streets.", "Millions of people live in {x}, a capital of culture.",
            "Tourists visit {x} to see its old buildings."],
}
QUERIES = ["animals", "wild animals", "facts about animals"]


def _task(animals, cities, n, rng):
    """Balanced (query, passage, relevant) triples: passages about an animal are relevant."""
    out = []
    for i in range(n):
        relevant = i % 2 == 0
        text = rng.choice(SENTENCES[relevant]).format(x=rng.choice(animals if relevant else cities))
        out.append((rng.choice(QUERIES), text[0].upper() + text[1:], relevant))
    return out


def _accuracy(model, task):
    rankings = Rank1(str(model), reasoning=False).rerank_many([(q, [p]) for q, p, _ in task])
    return sum((r[0].score > 0.5) == relevant for r, (_, _, relevant) in zip(rankings, task)) / len(task)


@pytest.mark.slow
def test_training_teaches_smollm2_a_held_out_relevance_task(smollm2_path, tmp_path):
    # Train on 8 animals and 8 cities; test on 4 animals and 4 cities never seen in training.
    rng = random.Random(0)
    train_task = _task(ANIMALS[:8], CITIES[:8], 96, rng)
    held_out = _task(ANIMALS[8:], CITIES[8:], 32, rng)
    data = _write(tmp_path / "train.jsonl", [
        {"prompt": build_rank1_prompt(q, p), "completion": f"\n</think> {'true' if rel else 'false'}"}
        for q, p, rel in train_task])
    before = _accuracy(smollm2_path, held_out)
    result = train(TrainConfig(model=str(smollm2_path), data=data, output=tmp_path / "run", reasoning=False,
                               think_tokens=False, lora_rank=8, lora_alpha=16, learning_rate=1e-3, batch_size=8,
                               micro_batch_size=8, epochs=2, save_steps=1000), progress=False)
    after = _accuracy(result.model, held_out)
    assert before <= 0.6, before  # measured: 0.50 (it answers false to everything)
    assert after >= 0.9, after  # measured: 1.00 after 24 steps (about a minute on 2 cores)


# ---- the command line ---------------------------------------------------------------------------
def test_train_cli_reports_bad_input_in_one_line(tmp_path, tiny_qwen_path):
    from tests.test_cli_rerank import run_cli

    missing = run_cli("train", "--model", str(tiny_qwen_path), "--data", str(tmp_path / "nope.jsonl"),
                      "--output", str(tmp_path / "run"), check=False)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "training data not found" in missing.stderr and "distill filter" in missing.stderr
    bad = _write(tmp_path / "bad.jsonl", [{"prompt": "p"}])
    proc = run_cli("train", "--model", str(tiny_qwen_path), "--data", str(bad), "--output", str(tmp_path / "run"),
                   "--lora-rank", "0", check=False)
    assert proc.returncode == 2 and "lora_rank must be >= 1" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()  # nothing started


def test_train_cli_full_fine_tuning_prints_the_model_folder_and_no_adapter(tmp_path, tiny_qwen_path):
    from tests.test_cli_rerank import run_cli

    data = _toy_data(tmp_path / "d.jsonl", n=4)
    bad = run_cli("train", "--model", str(tiny_qwen_path), "--data", str(data), "--output", str(tmp_path / "x"),
                  "--finetune", "qlora", check=False)
    assert bad.returncode == 2 and "finetune must be lora or full, got 'qlora'" in bad.stderr
    proc = run_cli("train", "--model", str(tiny_qwen_path), "--data", str(data), "--output", str(tmp_path / "run"),
                   "--finetune", "full", "--batch-size", "2", "--micro-batch-size", "2", "--max-steps", "1", "--quiet")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["adapter"] is None and result["model"] == str(tmp_path / "run" / "model")
    assert f"model: {tmp_path / 'run' / 'model'}" in proc.stderr and "adapter:" not in proc.stderr
