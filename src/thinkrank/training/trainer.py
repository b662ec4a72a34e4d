"""SFT of a causal LM on Rank1 traces (LoRA, or every weight), with the Hugging Face ``Trainer``.

A run folder holds everything needed to continue or use the result::

    output/
      train_config.json   the TrainConfig of the run
      checkpoints/        Trainer checkpoints (adapter or weights, optimiser, scheduler, RNG); resume reads the latest
      loss.jsonl          one line per logged step: step, epoch, loss, answer_loss, learning_rate, grad_norm
      adapter/            LoRA: the adapter + tokenizer: Rank1(model="output/adapter") loads base + adapter
      model/              the merged model + tokenizer (LoRA with config.merge; always after full
                          fine-tuning, where it is the only output): Rank1(model="output/model")
      result.json         what the run did (examples used / left out, steps, final loss, seconds)
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from thinkrank.errors import InvalidInputError, require
from thinkrank.io import changed_settings
from thinkrank.training.config import TrainConfig
from thinkrank.training.data import PadCollator, read_sft, tokenize_all, without_reasoning
from thinkrank.training.model import add_lora, load_base, precision


@dataclass
class TrainResult:
    """What a training run produced."""

    output: Path
    adapter: Path | None
    model: Path | None
    examples: int
    too_long: int
    steps: int
    final_loss: float | None
    seconds: float
    resumed_from: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("output", "adapter", "model"):
            out[key] = str(out[key]) if out[key] is not None else None
        return out


def accumulation_steps(config: TrainConfig) -> int:
    """Micro-batches per optimiser step, so ``micro_batch_size`` × this ≥ ``batch_size``."""
    return max(1, math.ceil(config.batch_size / config.micro_batch_size))


def latest_checkpoint(output: Path) -> str | None:
    """The newest ``checkpoint-N`` folder under ``output/checkpoints``, if any."""
    folder = output / "checkpoints"
    found = [p for p in folder.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    return str(max(found, key=lambda p: int(p.name.split("-")[-1]))) if found else None


def train(config: TrainConfig, *, resume: bool = True, progress: bool = True,
          on_log: Callable[[dict[str, Any]], None] | None = None) -> TrainResult:
    """Train on ``config.data`` and save the result under ``config.output``: a LoRA adapter (and the
    merged model), or with ``config.finetune == "full"`` the whole fine-tuned model.

    Args:
        resume: continue from the latest checkpoint in ``output/checkpoints`` when there is one
            (the same data and settings are required: the run's ``train_config.json`` is checked).
        progress: show the Trainer's progress bar.
        on_log: called with each loss-log record as it is written.

    Raises:
        InvalidInputError: a bad setting or data file, or a resume with different settings.
        MissingExtraError: ``peft`` is missing (``pip install 'thinkrank[train]'``).
        ModelLoadError: the base model cannot be loaded.
    """
    require("peft", "train")
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    config.validate()
    started = time.monotonic()
    output = config.output
    checkpoint = latest_checkpoint(output) if resume else None
    _check_same_run(config, output, checkpoint)
    output.mkdir(parents=True, exist_ok=True)
    (output / "train_config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")

    examples = read_sft(config.data)
    if not config.reasoning:
        examples = [without_reasoning(e) for e in examples]
    device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
    full = config.finetune == "full"
    prec = precision(config.dtype, on_gpu=device.startswith("cuda"))
    if full and prec.load != torch.float32:
        # Adam's updates at fine-tuning rates (~1e-5 of a weight) vanish in 16-bit weights: keep
        # float32 master weights and run the passes in the chosen 16-bit type.
        prec = replace(prec, load=torch.float32)
    model, tokenizer, think_ids = load_base(config, prec.load)
    data = tokenize_all(tokenizer, examples, config.cutoff_len)
    if not full:
        model = add_lora(model, config, think_ids)
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()

    log_path = output / "loss.jsonl"
    if checkpoint is None and log_path.exists():
        log_path.unlink()  # a fresh run starts a fresh log; a resumed one appends

    class LossLog(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
            if not logs or "loss" not in logs:
                return
            record: dict[str, Any] = {"step": state.global_step, "epoch": round(float(state.epoch or 0), 4),
                      **{k: float(logs[k]) for k in ("loss", "answer_loss", "learning_rate", "grad_norm") if k in logs}}
            with log_path.open("a") as fh:
                fh.write(json.dumps(record) + "\n")
            if on_log is not None:
                on_log(record)

    args = TrainingArguments(
        output_dir=str(output / "checkpoints"),
        per_device_train_batch_size=config.micro_batch_size,
        gradient_accumulation_steps=accumulation_steps(config),
        learning_rate=config.learning_rate,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        warmup_steps=config.warmup_ratio,  # a float in [0, 1) is a share of all steps
        lr_scheduler_type=config.scheduler,
        logging_steps=config.logging_steps,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        bf16=prec.bf16,
        fp16=prec.fp16,
        seed=config.seed,
        data_seed=config.seed,
        use_cpu=device == "cpu",
        report_to=[],
        remove_unused_columns=False,
        disable_tqdm=not progress,
        dataloader_num_workers=0,
        **config.extra,
    )
    trainer = answer_loss_trainer(Trainer)(model=model, args=args, train_dataset=data.rows,
                                           data_collator=PadCollator(tokenizer.pad_token_id), callbacks=[LossLog()])
    state = trainer.train(resume_from_checkpoint=checkpoint)

    adapter, merged_path = None, None
    if full:
        merged_path = output / "model"
        model.save_pretrained(str(merged_path))
        tokenizer.save_pretrained(str(merged_path))
    else:
        adapter = output / "adapter"
        model.save_pretrained(str(adapter))
        tokenizer.save_pretrained(str(adapter))
        if config.merge:
            merged_path = output / "model"
            model.merge_and_unload().save_pretrained(str(merged_path))
            tokenizer.save_pretrained(str(merged_path))

    losses = [json.loads(line)["loss"] for line in log_path.read_text().splitlines()] if log_path.exists() else []
    result = TrainResult(output, adapter, merged_path, len(data.rows), data.too_long, int(state.global_step),
                         losses[-1] if losses else None, time.monotonic() - started, checkpoint)
    (output / "result.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    return result


def answer_loss_trainer(base: type) -> type:
    """``base`` (the ``Trainer``) that also logs ``answer_loss``: the mean cross-entropy of the
    answer token alone (the token Rank1 scores) over the steps since the last log.

    The training loss averages every completion token, so with reasoning off it mixes the answer
    with a near-certain EOS, and with chains it is dominated by the chain. The answer's own loss
    says whether the model learns to judge: ln 2 = 0.693 is a 50/50 guess on balanced pairs.
    """
    import torch

    class AnswerLossTrainer(base):  # type: ignore[misc, valid-type]
        _answer_sum, _answer_count = 0.0, 0

        def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            inputs = dict(inputs)
            answer_at = inputs.pop("answer_at", None)
            loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
            if answer_at is not None and model.training:
                rows = torch.nonzero(answer_at > 0).flatten()
                if len(rows):
                    at = answer_at[rows].to(outputs.logits.device)
                    with torch.no_grad():  # position t is predicted by the logits at t - 1
                        logits = outputs.logits[rows, at - 1].float()
                        ce = torch.nn.functional.cross_entropy(logits, inputs["labels"][rows, at], reduction="sum")
                    self._answer_sum += float(ce)
                    self._answer_count += len(rows)
            return (loss, outputs) if return_outputs else loss

        def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
            if "loss" in logs and self._answer_count:
                logs["answer_loss"] = self._answer_sum / self._answer_count
                self._answer_sum, self._answer_count = 0.0, 0
            super().log(logs, *args, **kwargs)

    return AnswerLossTrainer


def _check_same_run(config: TrainConfig, output: Path, checkpoint: str | None) -> None:
    """Resuming with other data or settings would silently mix two runs: refuse it."""
    saved = output / "train_config.json"
    if checkpoint is None or not saved.exists():
        return
    # These may change between tries (a moved folder, another machine) without changing what is learned.
    ignore = {"output", "save_steps", "save_total_limit", "logging_steps", "merge", "device", "gradient_checkpointing"}
    changed = changed_settings(json.loads(saved.read_text()), config.to_dict(), TrainConfig, ignore)
    if changed:
        raise InvalidInputError(
            f"{output} holds a run with other settings ({', '.join(changed)}); resuming would mix two runs. "
            "Use a new --output, or --no-resume to start over in this folder"
        )
