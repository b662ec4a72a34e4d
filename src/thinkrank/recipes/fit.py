"""Stage 3, training: one run (LoRA or full fine-tuning) per arm and learning rate (the existing trainer, resumable,
with its progress bar), each scored on the dev split; the dev split alone picks the learning
rate. Every run folder gets its loss curve as ``loss.csv`` and ``loss.svg``."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from thinkrank.datasets.collection import Collection
from thinkrank.datasets.runs import Run, write_trec_run
from thinkrank.recipes.config import RecipeConfig
from thinkrank.recipes.scoring import rerank


def train_config(config: RecipeConfig, arm: str, data: Path, lr: float, output: Path) -> Any:
    from thinkrank.training import TrainConfig

    # merge=False: the trainer's merge is skipped; fit_arm merges each run once itself (merge_adapter).
    # think_tokens=False keeps the base vocabulary, so the untrained and trained models read
    # the same tokens and the comparison is of training alone.
    return TrainConfig(model=config.model, data=data, output=output, reasoning=arm == "chains",
                       finetune=config.finetune, lora_rank=config.lora_rank, lora_alpha=config.lora_alpha, think_tokens=False,
                       learning_rate=lr, batch_size=config.batch_size, micro_batch_size=config.micro_batch_size,
                       epochs=config.epochs, max_steps=config.max_steps, cutoff_len=config.cutoff_len,
                       save_steps=25, seed=config.seed, device=config.device, merge=False,
                       dtype=config.dtype)


def fit_arm(config: RecipeConfig, arm: str, data: Path, folder: Path, dev: Collection, dev_run: Run) -> dict[str, Any]:
    """Train ``arm`` at each learning rate (a finished run is kept), score each on dev, pick the best."""
    from thinkrank.training import train

    depth = config.depths[0]
    candidates = {}
    for lr in config.learning_rates:
        out = folder / f"lr-{lr:g}"
        if not (out / "result.json").exists():
            train(train_config(config, arm, data, lr, out), progress=config.progress)
        write_loss_curve(out)
        result = json.loads((out / "result.json").read_text())
        # Full fine-tuning writes the whole model: nothing to merge.
        adapter = out / "adapter" if config.finetune == "lora" else None
        model = merge_adapter(config.model, adapter, out / "merged") if adapter else out / "model"
        scored = rerank(model, dev, dev_run, list(dev.queries), [depth], config, folder / "dev-judgments.sqlite")[depth]
        assert scored.reranked is not None and scored.reranked_metrics is not None
        write_trec_run(scored.reranked, out / f"dev-top{depth}.trec")
        candidates[f"{lr:g}"] = {"lr": lr, "dev": scored.reranked_metrics.aggregate, "steps": result["steps"],
                                 "examples": result["examples"], "seconds": round(result["seconds"], 1),
                                 "final_loss": result["final_loss"], "model": str(model), "adapter": str(adapter) if adapter else None}
    best = max(candidates.values(), key=lambda c: (c["dev"]["nDCG@10"], -c["lr"]))
    return {"chosen_lr": best["lr"], "model": best["model"], "dev_depth": depth, "candidates": candidates}


def merge_adapter(base: str, adapter: Path, output: Path) -> Path:
    """``base`` + ``adapter`` merged into plain transformers weights (float32) in ``output``, once
    (an existing ``output`` is kept). Scoring is done on this folder, not on base + adapter: the
    same function, but on the project's CPU (torch 2.13, bfloat16) a model merged in memory ran
    1.8x slower per pass than the same weights saved and loaded again (0.134 s against 0.076 s per
    330-token sequence; the cause was not found), and the chosen run's folder becomes ``model/``."""
    if (output / "config.json").exists():
        return output
    import torch
    from transformers import AutoTokenizer

    from thinkrank.engines.loading import load_causal_lm, resolve_model

    tmp = output.with_name(output.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(str(adapter))
    # The engines' own loader: base + adapter merged, the embedding table grown to the adapter's tokenizer.
    model = load_causal_lm(replace(resolve_model(base), adapter=str(adapter)), device="cpu", dtype=torch.float32,
                           vocab_size=len(tokenizer))
    model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    shutil.rmtree(output, ignore_errors=True)
    tmp.rename(output)
    return output


def write_loss_curve(run: Path) -> None:
    """``loss.csv`` (step, loss, the answer token's own loss) and a small ``loss.svg`` from the
    trainer's ``loss.jsonl``."""
    log = run / "loss.jsonl"
    points = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    (run / "loss.csv").write_text("step,epoch,loss,answer_loss,learning_rate\n" + "".join(
        f"{p['step']},{p['epoch']},{p['loss']},{p.get('answer_loss', '')},{p.get('learning_rate', '')}\n" for p in points))
    series = {"loss": [(p["step"], p["loss"]) for p in points],
              "answer token": [(p["step"], p["answer_loss"]) for p in points if "answer_loss" in p]}
    (run / "loss.svg").write_text(loss_svg({k: v for k, v in series.items() if v}, run.name))


COLOURS = ("#2a6fdb", "#d9480f")


def loss_svg(series: dict[str, list[tuple[int, float]]], title: str, width: int = 480, height: int = 240) -> str:
    """A line chart of each loss by step on one scale, as a standalone SVG (no plotting library
    needed), with ln 2 marked: the answer token's loss of a 50/50 guess."""
    pad = 40
    head = f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">'
    points = [p for line in series.values() for p in line]
    if not points:
        return head + f'<text x="{pad}" y="{height / 2}">no loss logged</text></svg>\n'
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)

    def sx(x: float) -> float:
        return pad + (x - x0) / ((x1 - x0) or 1) * (width - 2 * pad)

    def sy(y: float) -> float:
        return height - pad - (y - y0) / ((y1 - y0) or 1) * (height - 2 * pad)

    out = [head, f'<text x="{pad}" y="16">training loss: {title}</text>']
    if y0 <= math.log(2) <= y1:
        out.append(f'<line x1="{pad}" x2="{width - pad}" y1="{sy(math.log(2)):.1f}" y2="{sy(math.log(2)):.1f}" '
                   'stroke="#999" stroke-dasharray="4 3"/>'
                   f'<text x="{width - pad + 2}" y="{sy(math.log(2)) + 4:.1f}">ln 2</text>')
    for i, (name, line) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)]
        drawn = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in line)
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{drawn}"/>'
                   f'<text x="{width - pad - 90}" y="{16 + 14 * i}" fill="{colour}">{name}</text>')
    out.append(f'<text x="4" y="{sy(y1) + 4:.1f}">{y1:.3f}</text><text x="4" y="{sy(y0) + 4:.1f}">{y0:.3f}</text>'
               f'<text x="{pad}" y="{height - 12}">step {x0}</text>'
               f'<text x="{width - pad - 50}" y="{height - 12}">step {x1}</text></svg>\n')
    return "".join(out)
