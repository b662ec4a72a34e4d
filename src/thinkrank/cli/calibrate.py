"""``thinkrank calibrate RUN_DIR``: fit calibrated probabilities to a labelled evaluate run."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from thinkrank.cli.common import friendly_errors

CALIBRATE_HELP = """Fit a map from a reranker's raw scores to calibrated probabilities of relevance.

RUN_DIR is the --output folder of `thinkrank evaluate --model ...` (its rankings.jsonl, metrics.json and qrels.trec). The fit is cross-validated by query: the metrics printed and saved (ECE over equal-mass bins, Brier score, log loss, before and after) are those of queries the map never saw. The JSON file records the reranker setting it was fitted for, and `thinkrank evaluate|rerank --calibration FILE` refuses another. It also holds what `--select recall=...` needs for conformal selection. Example:

  thinkrank evaluate --dataset data/scifact --run bm25 --top-k 20 --model jhu-clsp/rank1-7b --output runs/scifact
  thinkrank calibrate runs/scifact --output rank1-scifact.calibration.json
"""


class Method(str, Enum):
    auto = "auto"
    platt = "platt"
    temperature = "temperature"
    isotonic = "isotonic"


def register(app: typer.Typer) -> None:
    app.command("calibrate", help=CALIBRATE_HELP)(calibrate)


def calibrate(
    run_dir: Annotated[Path, typer.Argument(help="An evaluate output folder with a reranker's judgments.")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Calibration file to write.  "
                                                "\\[default: RUN_DIR/calibration.json]")] = None,
    method: Annotated[Method, typer.Option(help="auto picks the method with the lowest held-out Brier score.")] = Method.auto,
    relevance_threshold: Annotated[int, typer.Option(help="The lowest qrels grade counted relevant (DL19: 2 is "
                                                     "TREC's binary cut).")] = 1,
    qrels: Annotated[Path | None, typer.Option(help="Relevance judgments.  \\[default: RUN_DIR/qrels.trec]")] = None,
    folds: Annotated[int, typer.Option(help="Cross-validation folds (by query).")] = 5,
    seed: Annotated[int, typer.Option(help="Seed of the query shuffle into folds.")] = 0,
    bins: Annotated[int, typer.Option(help="Equal-mass bins of the ECE.")] = 10,
) -> None:
    _calibrate(**locals())


@friendly_errors
def _calibrate(**opts: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    from thinkrank.calibration import fit_calibration, load_labelled_run
    from thinkrank.errors import InvalidInputError

    if opts["bins"] < 1:
        raise InvalidInputError(f"--bins must be >= 1, got {opts['bins']}")
    run = load_labelled_run(opts["run_dir"], qrels=opts["qrels"], relevance_threshold=opts["relevance_threshold"])
    cal = fit_calibration(run, method=opts["method"].value, folds=opts["folds"], seed=opts["seed"], bins=opts["bins"])
    path = cal.save(opts["output"] or Path(opts["run_dir"]) / "calibration.json")
    fitted = cal.fitted_on
    table = Table(title=f"{fitted['dataset']}: {fitted['queries']} queries, {fitted['pairs']} pairs, {fitted['relevant']} "
                        f"relevant (grade >= {run.relevance_threshold}); held-out, {opts['folds']}-fold by query")
    for col in ("method", "ECE", "Brier", "log loss"):
        table.add_column(col, justify="left" if col == "method" else "right")
    m = cal.metrics
    table.add_row("raw score", f"{m['ece_before']:.4f}", f"{m['brier_before']:.4f}", f"{m['log_loss_before']:.4f}")
    for name, scores in cal.cross_validation["methods"].items():
        if "error" in scores:
            table.add_row(name, "–", "–", "–")
            continue
        mark = " (chosen)" if name == cal.method else ""
        table.add_row(name + mark, f"{scores['ece']:.4f}", f"{scores['brier']:.4f}", f"{scores['log_loss']:.4f}")
    Console(stderr=True).print(table)
    print(f"calibration ({cal.method}): {path}", file=sys.stderr)
