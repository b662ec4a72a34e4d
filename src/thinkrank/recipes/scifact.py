"""The SciFact recipe end to end. Each stage writes into the run folder and is skipped when its
last file exists, so the same command continues an interrupted run::

    runs/scifact/
      recipe.json                 the settings (a rerun with other settings is refused, except
                                  other evaluation depths after the same first, dev, depth, and
                                  other learning rates: only the new ones are trained)
      data/      split.json       train/dev claims (by query), the test-leak check, the mix counts
                 bm25-train.trec  BM25 over the training claims (hard negatives, dev candidates)
                 pairs.jsonl      the drawn training pairs
      targets/   direct.jsonl     label after a closed chain (reasoning off)
                 chains.jsonl     self-generated chains that agree with the label (+ traces.sqlite)
                 targets.json     counts, and the filter's stage table for the chains
      train/     <arm>/lr-<lr>/   one run per learning rate: loss.jsonl/csv/svg, adapter/ (LoRA), model/
                 selection.json   dev nDCG@10 of every run, the chosen learning rate per arm
      eval/      top<k>/<system>/ report.html (per-query delta chart), metrics.json, reranked.trec
                 results.json/md  nDCG@10, R@10, paired tests vs BM25 and vs the untrained model
      model/                      the dev-best arm, merged: Rank1(model="runs/scifact/model")
      model-card.md               also model/README.md
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from thinkrank.errors import InvalidInputError
from thinkrank.io import changed_settings
from thinkrank.recipes import data as data_stage
from thinkrank.recipes.config import RecipeConfig

STAGES = ("data", "targets", "train", "evaluate", "model")
# Settings that may change between tries without changing what the recipe computes.
_FREE = {"output", "progress", "device"}


@dataclass
class RecipeResult:
    output: Path
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    results: dict[str, Any] | None = None
    model: Path | None = None


def run_recipe(config: RecipeConfig, *, say: Callable[[str], None] | None = None) -> RecipeResult:
    """Run every stage not done yet; returns what ran and what was skipped.

    Raises:
        InvalidInputError: a bad setting, a run folder holding other settings, or test data
            found in the training data.
    """
    config.validate()
    out = config.output
    _check_same_recipe(config, out)
    out.mkdir(parents=True, exist_ok=True)
    config.write(out / "recipe.json")
    say = say or (lambda m: None)
    result = RecipeResult(out)
    folders = {s: out / s for s in ("data", "targets", "train", "eval")}
    done = {"data": folders["data"] / "split.json", "targets": folders["targets"] / "targets.json",
            "train": folders["train"] / "selection.json", "evaluate": folders["eval"] / "results.json",
            "model": out / "model" / "README.md"}

    def stage(name: str, work: Callable[[], None]) -> None:
        if done[name].exists():
            result.skipped.append(name)
            say(f"{name}: done before ({done[name]})")
            return
        say(f"{name}: running")
        start = time.monotonic()
        work()
        result.seconds[name] = round(time.monotonic() - start, 1)
        result.ran.append(name)
        say(f"{name}: done in {result.seconds[name]:.0f}s")

    stage("data", lambda: data_stage.build_data(config, folders["data"]))
    split = data_stage.read_split(folders["data"])

    def targets() -> None:
        from thinkrank.recipes.targets import build_targets

        build_targets(config, data_stage.training_pairs(folders["data"]), folders["targets"])

    stage("targets", targets)
    dev, dev_run = _dev(config, folders["data"], split)

    def train() -> None:
        from thinkrank.recipes.fit import fit_arm

        test = data_stage.test_claims(config)
        arms, skipped = {}, {}
        for arm in config.arms:
            path = folders["targets"] / f"{arm}.jsonl"
            rows = [json.loads(line) for line in path.read_text().splitlines()]
            if not rows:
                skipped[arm] = "no target survived the filter (see targets/targets.json)"
                continue
            data_stage.assert_no_test_leak([r["qid"] for r in rows], [], test, str(path))
            arms[arm] = fit_arm(config, arm, path, folders["train"] / arm, dev, dev_run)
        if not arms:
            raise InvalidInputError(f"no arm has training targets ({skipped}); raise chain_tokens or pairs")
        selection = {"arms": arms, "skipped": skipped, "dev_depth": config.depths[0], "split": split.to_dict()}
        (folders["train"] / "selection.json").write_text(json.dumps(selection, indent=2) + "\n")

    if done["train"].exists() and _trained_rates(done["train"]) != set(config.learning_rates):
        # Other learning rates: train only the new ones (a finished run is kept, fit_arm skips it),
        # choose again on dev among the rates now asked for, then evaluate and write the model again.
        say(f"train: learning rates are now {list(config.learning_rates)}; training the new ones and choosing "
            "again on dev (finished runs are kept)")
        for name in ("train", "evaluate", "model"):
            done[name].unlink(missing_ok=True)

    stage("train", train)
    selection = json.loads(done["train"].read_text())
    if done["evaluate"].exists() and json.loads(done["evaluate"].read_text())["depths"] != list(config.depths):
        # Other evaluation depths: evaluate again (pairs scored before come from eval/judgments.sqlite),
        # and write the model card again with the new tables.
        say(f"evaluate: depths are now {list(config.depths)}; evaluating again (scored pairs come from the cache)")
        done["evaluate"].unlink()
        done["model"].unlink(missing_ok=True)

    def evaluate() -> None:
        from thinkrank.recipes.results import evaluate_all

        evaluate_all(config, selection, dev, dev_run, folders["eval"])

    stage("evaluate", evaluate)
    result.results = json.loads(done["evaluate"].read_text())

    def model() -> None:
        from thinkrank.recipes.results import write_model

        write_model(config, selection, result.results or {}, out / "model")

    stage("model", model)
    result.model = out / "model"
    return result


def _trained_rates(selection: Path) -> set[float]:
    """The learning rates a saved dev selection chose among."""
    arms = json.loads(selection.read_text())["arms"]
    return {float(c["lr"]) for arm in arms.values() for c in arm["candidates"].values()}


def _dev(config: RecipeConfig, folder: Path, split: data_stage.Split) -> tuple[Any, Any]:
    """The dev claims (training judgments only) and their BM25 candidates."""
    dev = data_stage.load_train(config).subset(split.dev)
    run = data_stage.read_train_run(folder).subset(split.dev)
    return dev, run


def _check_same_recipe(config: RecipeConfig, out: Path) -> None:
    saved = out / "recipe.json"
    if not saved.exists():
        return
    before, now = json.loads(saved.read_text()), json.loads(json.dumps(config.to_dict()))
    changed = changed_settings(before, now, RecipeConfig, _FREE)
    old_depths = before.get("depths") or []
    if "depths" in changed and old_depths:  # now["depths"] is never empty (validated)
        if old_depths[0] != now["depths"][0]:
            raise InvalidInputError(
                f"{out} chose its models on dev at BM25 depth {old_depths[0]}; the first of --depths is that dev "
                f"depth, so keep it first (e.g. --depths {','.join(map(str, [old_depths[0], *now['depths'][1:]]))}) "
                "or use a new --output folder")
    if changed and set(changed) <= {"depths", "learning_rates"}:
        return  # evaluation depths after the same dev depth, or other learning rates: run_recipe redoes what they change
    if changed:
        raise InvalidInputError(f"{out} holds a recipe run with other settings ({', '.join(changed)}); "
                                "finished stages would be mixed with new ones. Use a new --output folder")
