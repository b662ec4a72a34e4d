"""``thinkrank recipe scifact``: the whole SciFact training recipe in one resumable command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from thinkrank.cli.common import friendly_errors

recipe_app = typer.Typer(
    name="recipe", no_args_is_help=True, add_completion=False,
    help="Training recipes end to end: data, targets, LoRA, evaluation and a model card (docs/training.md).",
)

SCIFACT_HELP = """Train a Rank1-style reranker on SciFact's training claims and measure it on the 300 test claims.

Stages, each a folder of the run and skipped when done (run the same command again to continue): data (train/dev split by claim, BM25 hard negatives, the pairs), targets (label after a closed chain; the base model's own chains kept when they agree with the label), train (LoRA per learning rate, chosen on dev), evaluate (BM25 top 20 and 50 reranked: nDCG@10, R@10, paired tests, fusion with BM25 fitted on dev, report.html), model (merged, with a model card). No test claim or judgment is used before the evaluation. Example:

  thinkrank recipe scifact --model "$(python -m thinkrank.testing smollm2)" --data ../shared/data/scifact --output runs/scifact-rank1

  thinkrank rerank --model runs/scifact-rank1/model --reasoning off --query "..." --docs docs.jsonl
"""


def register(app: typer.Typer) -> None:
    app.add_typer(recipe_app, name="recipe")


def _floats(text: str, name: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise typer.BadParameter(f"{name} is a comma-separated list of numbers, got {text!r}") from None


@recipe_app.command("scifact", help=SCIFACT_HELP)
def scifact(
    model: Annotated[str, typer.Option("--model", "-m", help="Base causal LM folder (e.g. SmolLM2-135M-Instruct).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Run folder.")],
    data: Annotated[Path, typer.Option(help="SciFact folder (test claims, qrels, corpus; train/ inside).")] = Path("../shared/data/scifact"),
    pairs: Annotated[int, typer.Option(help="Training pairs drawn.")] = 1200,
    mix: Annotated[str, typer.Option(help="Data mix: source=share,… (positive, negative, hard:A-B).")] = "positive=0.25,negative=0.25,hard:1-5=0.25,hard:6-10=0.25",
    dev_fraction: Annotated[float, typer.Option(help="Share of training claims held out as dev.")] = 0.1,
    dev_queries: Annotated[int | None, typer.Option(help="Hold out this many training claims as dev (wins over --dev-fraction).")] = None,
    train_queries: Annotated[int | None, typer.Option(help="Use only this many training claims (default: all).")] = None,
    arms: Annotated[str, typer.Option(help="Targets to train: direct, chains or both (comma-separated).")] = "direct,chains",
    chain_pairs: Annotated[int, typer.Option(help="Pairs given a self-generated chain.")] = 400,
    chain_tokens: Annotated[int, typer.Option(help="Token budget of each self-generated chain.")] = 128,
    lrs: Annotated[str, typer.Option("--lrs", help="Learning rates tried (one run each; dev picks).")] = "1e-4,3e-4",
    epochs: Annotated[float, typer.Option(help="Training epochs.")] = 1.0,
    max_steps: Annotated[int | None, typer.Option(help="Stop each training run after this many steps.")] = None,
    batch_size: Annotated[int, typer.Option(help="Effective batch size.")] = 16,
    micro_batch_size: Annotated[int, typer.Option(help="Examples per forward/backward pass.")] = 4,
    finetune: Annotated[str, typer.Option(help="lora (an adapter) or full (every weight; fits small models).")] = "lora",
    lora_rank: Annotated[int, typer.Option(help="LoRA rank.")] = 16,
    passage_tokens: Annotated[int, typer.Option(help="Passages cut to this many tokens (training and scoring).")] = 256,
    depths: Annotated[str, typer.Option(help="BM25 depths reranked; the first is also the dev depth.")] = "20,50",
    test_queries: Annotated[int | None, typer.Option(help="Evaluate only the first N test claims (default: all).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    device: Annotated[str | None, typer.Option(help="cpu or cuda (default: cpu).")] = None,
    dtype: Annotated[str, typer.Option(help="auto (bfloat16 on a GPU, float32 on CPU), bfloat16 or float32, in every stage; "
                                       "bfloat16 is several times faster on a CPU with AMX (amx_bf16 in lscpu).")] = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bars.")] = False,
) -> None:
    _scifact(**locals())


@friendly_errors
def _scifact(**o: Any) -> None:
    from thinkrank.recipes import RecipeConfig, run_recipe

    shares = {}
    for item in o["mix"].split(","):
        source, _, share = item.rpartition("=")
        try:
            shares[source.strip()] = float(share)
        except ValueError:
            raise typer.BadParameter(f"--mix items are source=share (e.g. hard:1-5=0.25), got {item!r}") from None
    config = RecipeConfig(
        model=o["model"], data=o["data"], output=o["output"], pairs=o["pairs"], shares=shares,
        dev_fraction=o["dev_fraction"], dev_queries=o["dev_queries"], train_queries=o["train_queries"], arms=tuple(a.strip() for a in o["arms"].split(",") if a.strip()),
        chain_pairs=o["chain_pairs"], chain_tokens=o["chain_tokens"], learning_rates=_floats(o["lrs"], "--lrs"),
        finetune=o["finetune"], epochs=o["epochs"], max_steps=o["max_steps"], batch_size=o["batch_size"],
        micro_batch_size=o["micro_batch_size"], lora_rank=o["lora_rank"], lora_alpha=2 * o["lora_rank"],
        passage_tokens=o["passage_tokens"], depths=tuple(int(d) for d in _floats(o["depths"], "--depths")),
        test_queries=o["test_queries"], seed=o["seed"], dtype=o["dtype"], device=o["device"], progress=not o["quiet"],
    )
    result = run_recipe(config, say=lambda m: typer.echo(m, err=True))
    if result.results:
        typer.echo((config.output / "eval" / "results.md").read_text(), err=True)
    typer.echo(json.dumps({"output": str(result.output), "model": str(result.model), "ran": result.ran,
                           "skipped": result.skipped, "seconds": result.seconds}))
