"""Training settings, with the Rank1 paper's values as defaults (§2.3, Appendix A)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from thinkrank.errors import InvalidInputError

FINETUNE = ("lora", "full")


@dataclass
class TrainConfig:
    """One LoRA SFT run.

    Attributes:
        model: the base causal LM (the paper used base, not instruct, Qwen2.5 models).
        data: prompt/completion JSONL (``thinkrank distill filter`` writes it).
        output: run folder: ``checkpoints/``, ``adapter/``, ``model/`` (merged), ``loss.jsonl``.
        reasoning: False trains the direct (no-chain) reranker: every completion becomes
            ``"\\n</think> true|false"``, what Rank1 scores after the prompt with reasoning off.
        finetune: ``lora`` trains a LoRA adapter (the paper's method); ``full`` trains every weight,
            kept in float32 (``dtype`` then sets only the mixed precision of the passes), and
            writes only ``model/``. Full fine-tuning fits small models: it holds the weights, their
            gradients and two Adam moments, about 16 bytes per parameter.
        lora_rank / lora_alpha / lora_dropout / target_modules: the adapter; ``"all-linear"``
            puts it on every linear layer but the output head.
        think_tokens: add ``<think>``/``</think>`` as special tokens, resize the embeddings and
            train their rows (trainable tokens); False keeps the base vocabulary.
        learning_rate / batch_size (effective) / micro_batch_size (per step) / epochs /
            max_steps / warmup_ratio / scheduler: the optimiser schedule; gradient accumulation
            makes up ``batch_size``.
        cutoff_len: most tokens per example; longer ones are left out (and counted), never cut,
            since cutting would drop the answer the model is trained to give.
        dtype: ``auto`` (bf16 where the GPU supports it, else fp32), ``bfloat16``, ``float16``, ``float32``.
        save_steps / save_total_limit: checkpoints; resume continues from the latest.
        merge: also save the merged model (``output/model``) that ``Rank1(model=...)`` loads.
    """

    model: str
    data: Path
    output: Path
    reasoning: bool = True
    finetune: str = "lora"
    lora_rank: int = 32
    lora_alpha: int = 64
    lora_dropout: float = 0.0
    target_modules: str | list[str] = "all-linear"
    think_tokens: bool = True
    learning_rate: float = 1e-4
    batch_size: int = 128
    micro_batch_size: int = 4
    epochs: float = 2.0
    max_steps: int | None = None
    warmup_ratio: float = 0.05
    scheduler: str = "cosine"
    cutoff_len: int = 2500
    dtype: str = "auto"
    gradient_checkpointing: bool = False
    logging_steps: int = 1
    save_steps: int = 200
    save_total_limit: int = 2
    seed: int = 0
    merge: bool = True
    device: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data, self.output = Path(self.data), Path(self.output)

    def validate(self) -> None:
        """Raises :class:`InvalidInputError` naming the first bad value."""
        checks = [
            (self.finetune in FINETUNE, f"finetune must be {' or '.join(FINETUNE)}, got {self.finetune!r}"),
            (self.lora_rank >= 1, f"lora_rank must be >= 1, got {self.lora_rank}"),
            (self.lora_alpha > 0, f"lora_alpha must be > 0, got {self.lora_alpha}"),
            (0 <= self.lora_dropout < 1, f"lora_dropout must be in [0, 1), got {self.lora_dropout}"),
            (self.learning_rate > 0, f"learning_rate must be > 0, got {self.learning_rate}"),
            (self.micro_batch_size >= 1, f"micro_batch_size must be >= 1, got {self.micro_batch_size}"),
            (self.batch_size >= self.micro_batch_size,
             f"batch_size ({self.batch_size}) must be >= micro_batch_size ({self.micro_batch_size})"),
            (self.epochs > 0, f"epochs must be > 0, got {self.epochs}"),
            (self.max_steps is None or self.max_steps >= 1, f"max_steps must be >= 1, got {self.max_steps}"),
            (0 <= self.warmup_ratio < 1, f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}"),
            (self.cutoff_len >= 8, f"cutoff_len must be >= 8 tokens, got {self.cutoff_len}"),
            (self.dtype in ("auto", "bfloat16", "float16", "float32"),
             f"dtype must be auto, bfloat16, float16 or float32, got {self.dtype!r}"),
            (self.save_steps >= 1, f"save_steps must be >= 1, got {self.save_steps}"),
        ]
        for ok, message in checks:
            if not ok:
                raise InvalidInputError(message)
        if not self.data.is_file():
            raise InvalidInputError(f"training data not found: {self.data} (make it with `thinkrank distill filter`)")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["data"], out["output"] = str(self.data), str(self.output)
        return out
