"""``thinkrank train``: LoRA SFT on prompt/completion data from ``thinkrank distill filter``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from thinkrank.cli.common import Switch, friendly_errors


TRAIN_HELP = """Fine-tune a causal LM into a Rank1 reranker with LoRA (needs the train extra).

Defaults are the Rank1 paper's: LoRA rank 32, alpha 64 on all linear layers, lr 1e-4, effective batch 128 (micro-batches + gradient accumulation), cosine schedule, 5% warmup, 2 epochs, 2,500-token cutoff, bf16 where the GPU supports it; <think>/</think> added as special tokens. The loss covers the completion only. Run the same command again to resume from the latest checkpoint. The run folder gets adapter/ (base + adapter) and model/ (merged); both load with `thinkrank rerank --model`. --finetune full trains every weight instead (float32 master weights) and writes model/ only. Example:

  thinkrank train --model Qwen/Qwen2.5-7B --data train.jsonl --output runs/rank1-7b

  thinkrank rerank --model runs/rank1-7b/model --query "..." --docs docs.jsonl
"""


def register(app: typer.Typer) -> None:
    app.command("train", help=TRAIN_HELP)(train)


def train(
    model: Annotated[str, typer.Option("--model", "-m", help="Base causal LM: hub id, local folder.")],
    data: Annotated[Path, typer.Option("--data", help="prompt/completion JSONL (`thinkrank distill filter`).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Run folder.")],
    reasoning: Annotated[Switch, typer.Option(help="off: train the direct reranker (answer without a chain).")] = Switch.on,
    finetune: Annotated[str, typer.Option(help="lora (an adapter, the paper's method) or full (every weight, float32 "
                                          "master weights; about 16 bytes per parameter).")] = "lora",
    lora_rank: Annotated[int, typer.Option(help="LoRA rank.")] = 32,
    lora_alpha: Annotated[int, typer.Option(help="LoRA alpha.")] = 64,
    lora_dropout: Annotated[float, typer.Option(help="LoRA dropout.")] = 0.0,
    target_modules: Annotated[str, typer.Option(help="all-linear, or comma-separated module names.")] = "all-linear",
    think_tokens: Annotated[bool, typer.Option(help="Add <think>/</think> as special tokens (embeddings resized).")] = True,
    learning_rate: Annotated[float, typer.Option("--lr", "--learning-rate", help="Peak learning rate.")] = 1e-4,
    batch_size: Annotated[int, typer.Option(help="Effective batch size (via gradient accumulation).")] = 128,
    micro_batch_size: Annotated[int, typer.Option(help="Examples per forward/backward pass.")] = 4,
    epochs: Annotated[float, typer.Option(help="Training epochs.")] = 2.0,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many optimiser steps.")] = None,
    warmup_ratio: Annotated[float, typer.Option(help="Share of steps spent warming up.")] = 0.05,
    scheduler: Annotated[str, typer.Option(help="Learning-rate schedule (transformers name).")] = "cosine",
    cutoff_len: Annotated[int, typer.Option(help="Longest example in tokens; longer ones are left out.")] = 2500,
    dtype: Annotated[str, typer.Option(help="auto, bfloat16, float16 or float32.")] = "auto",
    gradient_checkpointing: Annotated[bool, typer.Option(help="Trade compute for memory.")] = False,
    save_steps: Annotated[int, typer.Option(help="Checkpoint every N steps.")] = 200,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    merge: Annotated[bool, typer.Option(help="Also save the merged model (output/model).")] = True,
    resume: Annotated[bool, typer.Option(help="Continue from the latest checkpoint in the run folder.")] = True,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, … (default: cuda when available).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    _train(**locals())


@friendly_errors
def _train(**o: Any) -> None:
    from dataclasses import fields

    from thinkrank.training import TrainConfig, train as run_training

    # The options are named after TrainConfig's fields; only these two change form.
    targets = o["target_modules"]
    settings = {f.name: o[f.name] for f in fields(TrainConfig) if f.name in o}
    settings["reasoning"] = o["reasoning"] == Switch.on
    settings["target_modules"] = targets if targets == "all-linear" else [t.strip() for t in targets.split(",") if t.strip()]
    config = TrainConfig(**settings)
    result = run_training(config, resume=o["resume"], progress=not o["quiet"])
    say = lambda m: typer.echo(m, err=True)  # noqa: E731
    if result.resumed_from:
        say(f"resumed from {result.resumed_from}")
    if result.too_long:
        say(f"left out {result.too_long:,} examples longer than {config.cutoff_len:,} tokens")
    loss = f"{result.final_loss:.4f}" if result.final_loss is not None else "n/a"
    say(f"trained {result.steps:,} steps on {result.examples:,} examples in {result.seconds:.0f}s (last loss {loss})")
    say("\n".join(f"{name}: {path}" for name, path in (("adapter", result.adapter), ("model", result.model)) if path))
    typer.echo(json.dumps(result.to_dict()))
