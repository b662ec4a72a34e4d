"""The settings of the SciFact recipe; ``recipe.json`` in the run folder records them."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from thinkrank.distill.sampling import DEFAULT_SHARES, MixConfig
from thinkrank.errors import InvalidInputError
from thinkrank.training.config import FINETUNE

ARMS = ("direct", "chains")
"""``direct``: the label after a closed chain (reasoning off); ``chains``: the base model's own
chains, kept when their answer agrees with the label."""


@dataclass
class RecipeConfig:
    """One run of the recipe.

    Attributes:
        model: the base causal LM (a local folder: SmolLM2-135M-Instruct on CPU).
        data: the SciFact folder: test claims, ``qrels.trec`` and ``corpus.jsonl`` there,
            training claims in ``train/``.
        output: the run folder.
        pairs: training pairs drawn (before the dev split is set apart).
        shares: the data mix (source -> share), as ``thinkrank distill sample``.
        dev_fraction / dev_queries: training claims held out for model selection (by query);
            ``dev_queries`` (a count) wins when given.
        train_queries: use only this many training claims (None: all); the miniature uses a few.
        arms: which targets to train (:data:`ARMS`).
        chain_pairs / chain_tokens / chain_temperature: how many training pairs get a
            self-generated chain (the first of the drawn pairs), each chain's token budget, and
            its sampling temperature.
        learning_rates: the grid searched on the dev split (one training run each).
        finetune: ``lora`` (an adapter, merged for scoring) or ``full`` (every weight; on SmolLM2 it
            learns the SciFact pairs where LoRA stays at the prior, see docs/training.md).
        epochs / max_steps / batch_size / micro_batch_size / lora_rank / lora_alpha / cutoff_len: training.
        passage_tokens: passages are cut to this many tokens, in training and in scoring alike.
        depths: BM25 depths reranked in the evaluation (the first is also the dev depth).
        test_queries: evaluate only the first N test claims (None: all 300).
        fusion_weights: grid of BM25 weights for the score interpolation, fitted on dev.
        dtype: weights and activations in every stage (chains, training, scoring): ``auto``
            (bfloat16 on a GPU, float32 on CPU), ``bfloat16`` or ``float32``. A CPU with AMX
            (``amx_bf16`` in ``lscpu``) trains and scores several times faster in bfloat16.
    """

    model: str
    data: Path
    output: Path
    pairs: int = 1200
    shares: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_SHARES))
    dev_fraction: float = 0.1
    dev_queries: int | None = None
    train_queries: int | None = None
    arms: tuple[str, ...] = ARMS
    chain_pairs: int = 400
    chain_tokens: int = 128
    chain_temperature: float = 0.3
    learning_rates: tuple[float, ...] = (1e-4, 3e-4)
    finetune: str = "lora"
    epochs: float = 1.0
    max_steps: int | None = None
    batch_size: int = 16
    micro_batch_size: int = 4
    lora_rank: int = 16
    lora_alpha: int = 32
    cutoff_len: int = 1024
    passage_tokens: int = 256
    depths: tuple[int, ...] = (20, 50)
    test_queries: int | None = None
    fusion_weights: tuple[float, ...] = tuple(round(i / 20, 2) for i in range(21))
    seed: int = 0
    dtype: str = "auto"
    device: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        self.data, self.output = Path(self.data), Path(self.output)
        self.arms, self.depths = tuple(self.arms), tuple(self.depths)
        self.learning_rates, self.fusion_weights = tuple(self.learning_rates), tuple(self.fusion_weights)

    def validate(self) -> None:
        """Raises :class:`InvalidInputError` naming the first bad value."""
        unknown = [a for a in self.arms if a not in ARMS]
        checks = [
            (not unknown and bool(self.arms), f"arms must be some of {', '.join(ARMS)}, got {list(self.arms)}"),
            (0 < self.dev_fraction < 1, f"dev_fraction must be in (0, 1), got {self.dev_fraction}"),
            (self.dev_queries is None or self.dev_queries >= 2, f"dev_queries must be >= 2, got {self.dev_queries}"),
            (self.train_queries is None or self.train_queries >= 4, f"train_queries must be >= 4, got {self.train_queries}"),
            (self.finetune in FINETUNE, f"finetune must be {' or '.join(FINETUNE)}, got {self.finetune!r}"),
            (bool(self.learning_rates) and all(lr > 0 for lr in self.learning_rates),
             f"learning_rates must be > 0, got {list(self.learning_rates)}"),
            (bool(self.depths) and all(d >= 1 for d in self.depths), f"depths must be >= 1, got {list(self.depths)}"),
            (self.test_queries is None or self.test_queries >= 2, f"test_queries must be >= 2, got {self.test_queries}"),
            (bool(self.fusion_weights) and all(0 <= w <= 1 for w in self.fusion_weights),
             f"fusion weights must be in [0, 1], got {list(self.fusion_weights)}"),
            (self.chain_pairs >= 1, f"chain_pairs must be >= 1, got {self.chain_pairs}"),
            (self.chain_tokens >= 1, f"chain_tokens must be >= 1, got {self.chain_tokens}"),
            (self.dtype in ("auto", "bfloat16", "float32"),
             f"dtype must be auto, bfloat16 or float32, got {self.dtype!r}"),
            (self.passage_tokens >= 8, f"passage_tokens must be >= 8, got {self.passage_tokens}"),
        ]
        for ok, message in checks:
            if not ok:
                raise InvalidInputError(message)
        self.mix().validate()
        if not (self.data / "train" / "queries.jsonl").is_file():
            raise InvalidInputError(f"{self.data} is not a SciFact folder: no train/queries.jsonl in it "
                                    "(expected queries.jsonl, qrels.trec, corpus.jsonl and train/)")

    def mix(self) -> MixConfig:
        return MixConfig(total=self.pairs, shares=dict(self.shares), seed=self.seed)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["data"], out["output"] = str(self.data), str(self.output)
        return out

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
