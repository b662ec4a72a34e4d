"""``--calibration FILE`` and ``--select SPEC``, shared by ``rerank`` and ``evaluate``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

CalibrationFile = Annotated[
    Path | None, typer.Option("--calibration", help="A calibration file (thinkrank calibrate) fitted for this reranker "
                              "setting: every judgment gets a calibrated `probability` beside its score.")
]
Select = Annotated[
    str | None, typer.Option("--select", help="Choose how many documents to keep per query (needs --calibration): "
                             "recall=R[,alpha=A][,rule=RULE] keeps, with confidence 1-A (default 0.1), at least a fraction R of the "
                             "relevant candidates (conformal; RULE: recall-probability, the default, score or top-k); "
                             "probability=P keeps those with calibrated probability >= P.")
]


def load(opts: dict[str, Any]) -> tuple[Any, dict[str, Any] | None]:
    """The calibration and selection the options ask for, read and checked before a model loads.

    Raises:
        InvalidInputError: an unreadable calibration file, a bad --select, or --select alone.
    """
    from thinkrank.errors import InvalidInputError

    cal = sel = None
    if opts.get("select") is not None:
        from thinkrank.calibration.selection import parse_selection

        sel = parse_selection(opts["select"])
        if opts.get("calibration") is None:
            raise InvalidInputError("--select needs --calibration FILE (its labelled queries and probabilities)")
    if opts.get("calibration") is not None:
        from thinkrank.calibration import load_calibration

        cal = load_calibration(opts["calibration"])
        if sel is not None and "recall" in sel:
            from thinkrank.calibration.selection import conformal_cut

            conformal_cut(cal, sel["recall"], sel["alpha"], sel["rule"])  # fails now, not after the reranking
    return cal, sel
