"""The model side of training: load the base, add the think tokens, wrap it in LoRA."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from thinkrank.errors import ModelLoadError, require
from thinkrank.prompts.rank1 import THINK_CLOSE, THINK_OPEN
from thinkrank.training.config import TrainConfig

THINK_TOKENS = (THINK_OPEN, THINK_CLOSE)


@dataclass
class Precision:
    """How weights are loaded (``load``) and which mixed precision the trainer uses."""

    load: Any
    bf16: bool = False
    fp16: bool = False


def precision(name: str, on_gpu: bool) -> Precision:
    """``auto``: bf16 on a GPU that supports it, else fp32 (CPUs train in fp32)."""
    import torch

    if name == "auto":
        name = "bfloat16" if on_gpu and torch.cuda.is_bf16_supported() else "float32"
    if name == "bfloat16":
        return Precision(torch.bfloat16, bf16=True)
    if name == "float16":
        return Precision(torch.float32, fp16=True)  # fp32 master weights, fp16 autocast
    return Precision(torch.float32)


def load_base(config: TrainConfig, dtype: Any) -> tuple[Any, Any, list[int]]:
    """``(model, tokenizer, think_ids)``: the base LM in ``dtype``, its tokenizer, and the ids of
    ``<think>``/``</think>`` when ``config.think_tokens`` (added as special tokens if missing,
    their embeddings started at the mean of the pieces they were split into before).

    Raises:
        ModelLoadError: the model cannot be loaded.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(config.model)
        model = AutoModelForCausalLM.from_pretrained(config.model, dtype=dtype)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"could not load base model {config.model!r}: {' '.join(str(exc).split())[:300]}; "
                             "pass a local model folder or a hub id available offline") from exc
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not config.think_tokens:
        return model, tokenizer, []
    pieces = {t: tokenizer(t, add_special_tokens=False)["input_ids"] for t in THINK_TOKENS}
    missing = [t for t in THINK_TOKENS if len(pieces[t]) != 1]
    if missing:
        tokenizer.add_tokens(missing, special_tokens=True)
        # Models often pad their tables past the vocabulary (Qwen2.5: 152,064 rows); the new ids
        # then land in unused rows. Only grow, never shrink: shrinking would change the output size.
        if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
            model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        _init_rows(model, {tokenizer.convert_tokens_to_ids(t): pieces[t] for t in missing})
    return model, tokenizer, [tokenizer.convert_tokens_to_ids(t) for t in THINK_TOKENS]


def _init_rows(model: Any, rows: dict[int, list[int]]) -> None:
    """Start each new token where the text it replaces was: the mean of its old pieces' rows.

    Far better than random rows: the model already reads ``<think>`` spelt out, so training
    starts from a token that means the same thing.
    """
    import torch

    tables = [model.get_input_embeddings().weight]
    output = model.get_output_embeddings()
    if output is not None and output.weight.data_ptr() != tables[0].data_ptr():
        tables.append(output.weight)
    with torch.no_grad():
        for table in tables:
            for new_id, old_ids in rows.items():
                table[new_id] = table[old_ids].mean(dim=0)


def _module_name(model: Any, module: Any) -> str:
    return next(name for name, m in model.named_modules() if m is module).rsplit(".", 1)[-1]


def add_lora(model: Any, config: TrainConfig, think_ids: list[int]) -> Any:
    """``model`` wrapped in a LoRA adapter; the think tokens' rows train too (both tables when
    input and output embeddings are not tied)."""
    peft = require("peft", "train")
    token_rows = None
    if think_ids:
        embed = model.get_input_embeddings()
        output = model.get_output_embeddings()
        token_rows = {_module_name(model, embed): think_ids}
        if output is not None and output.weight.data_ptr() != embed.weight.data_ptr():
            token_rows[_module_name(model, output)] = think_ids
    lora = peft.LoraConfig(
        r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
        target_modules=config.target_modules, task_type="CAUSAL_LM", trainable_token_indices=token_rows,
    )
    return peft.get_peft_model(model, lora)
