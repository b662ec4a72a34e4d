"""Calibrated probabilities for reranker scores, and selection of how many documents to keep.

    >>> from thinkrank.calibration import fit_calibration, load_labelled_run
    >>> cal = fit_calibration(load_labelled_run("runs/scifact-bm25-rank1"))   # query-level CV
    >>> cal.save("rank1-scifact.calibration.json")
    >>> ranking = Rank1(..., calibration="rank1-scifact.calibration.json").rerank(query, docs)
    >>> ranking[0].probability, ranking.select(cal, recall=0.9, alpha=0.1).kept

``thinkrank calibrate RUN_DIR --output FILE`` does the fit from the command line; see
docs/calibration.md for the methods, the guarantee of conformal selection, and measurements.
"""

from thinkrank.calibration.file import Calibration, ConformalQuery, load_calibration
from thinkrank.calibration.fit import fit_calibration
from thinkrank.calibration.labelled import LabelledQuery, LabelledRun, load_labelled_run
from thinkrank.calibration.maps import METHODS, CalibrationMap
from thinkrank.calibration.metrics import brier, ece, log_loss, reliability_bins
from thinkrank.calibration.selection import (
    RULES, ConformalCut, Selection, conformal_cut, conformal_threshold, conformal_top_k, cut_keys, recall_probabilities,
    select,
)

__all__ = [
    "METHODS", "RULES", "Calibration", "CalibrationMap", "ConformalCut", "ConformalQuery", "LabelledQuery", "LabelledRun",
    "Selection", "brier", "conformal_cut", "conformal_threshold", "conformal_top_k", "cut_keys", "ece", "fit_calibration", "load_calibration",
    "load_labelled_run", "log_loss", "recall_probabilities", "reliability_bins", "select",
]
