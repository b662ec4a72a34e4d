"""TREC run output: scores at full precision, ids that cannot be columns refused, one id per query.

A TREC run line is ``qid Q0 docid rank score tag``; trec_eval and ir-measures split it on
whitespace and rank by the score column alone (ties by doc id), so a score rounded into a tie
or an id holding a space changes what they evaluate.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import ir_measures
import pytest

from thinkrank.datasets.runs import Run, read_trec_run, write_trec_run
from thinkrank.errors import InvalidInputError
from thinkrank.types import Judgment, Ranking, trec_lines

NEAR_ONE = [0.99999991, 0.99999994, 0.99999997]  # equal at 6 decimals
NEAR_ZERO = [3e-9, 2e-9, 1e-9]


@pytest.mark.parametrize("scores", [NEAR_ONE, NEAR_ZERO])
def test_scores_near_0_or_1_keep_their_order_in_the_file(tmp_path, scores):
    ranking = Ranking("q", [Judgment(f"d{i}", i, s) for i, s in enumerate(scores)], "q1")
    lines = ranking.to_trec()
    assert [float(line.split()[4]) for line in lines] == sorted(scores, reverse=True)  # exact round trip
    path = tmp_path / "run.trec"
    path.write_text("".join(line + "\n" for line in lines))
    # the relevant document is the best-scored one; rounded to 6 decimals it would tie with the others
    best = ranking.doc_ids[0]
    worst = ranking.doc_ids[-1]
    rr = ir_measures.parse_measure("RR")
    run = read_trec_run(path).to_dict()
    assert ir_measures.calc_aggregate([rr], {"q1": {best: 1}}, run)[rr] == 1.0
    assert ir_measures.calc_aggregate([rr], {"q1": {worst: 1}}, run)[rr] == pytest.approx(1 / 3)
    written = write_trec_run(Run({"q1": list(zip(ranking.doc_ids, (j.score for j in ranking)))}), tmp_path / "w.trec", tag="t")
    assert [float(line.split()[4]) for line in written.read_text().splitlines()] == sorted(scores, reverse=True)


@pytest.mark.parametrize("doc_id", ["has space", "tab\there", "new\nline", "nul\x00", "bell\x07", ""])
def test_ids_that_cannot_be_a_column_are_refused(tmp_path, doc_id):
    ranking = Ranking("q", [Judgment(doc_id, 0, 0.5)], "q1")
    with pytest.raises(InvalidInputError, match="cannot be written to a TREC file"):
        ranking.to_trec()
    with pytest.raises(InvalidInputError, match="cannot be written to a TREC file"):
        Ranking("q", [Judgment("d", 0, 0.5)], doc_id or " ").to_trec()
    target = tmp_path / "bad.trec"
    with pytest.raises(InvalidInputError, match="document id"):
        write_trec_run(Run({"q1": [("ok", 1.0), (doc_id, 0.5)]}), target, tag="t")
    assert not target.exists()  # nothing half-written


def test_repeated_query_ids_are_refused():
    a = Ranking("first", [Judgment("d", 0, 0.5)], "q1")
    b = Ranking("second", [Judgment("d", 0, 0.4)], "q1")
    with pytest.raises(InvalidInputError, match="share the query id 'q1'"):
        trec_lines([a, b])
    assert len(trec_lines([a, Ranking("second", [Judgment("d", 0, 0.4)], "q2")])) == 2


def test_cli_refuses_repeated_query_ids_for_trec_output_before_loading_a_model(tmp_path):
    (tmp_path / "q.jsonl").write_text('{"id": "q1", "text": "cats"}\n{"id": "q1", "text": "dogs"}\n')
    (tmp_path / "d.jsonl").write_text(json.dumps({"id": "d1", "text": "Cats purr."}) + "\n")
    proc = subprocess.run(
        [sys.executable, "-m", "thinkrank", "rerank", "--model", str(tmp_path / "no-such-model"), "--queries",
         str(tmp_path / "q.jsonl"), "--docs", str(tmp_path / "d.jsonl"), "--format", "trec", "--quiet"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"}, check=False,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    expected = ("error: queries 0 and 1 share the query id 'q1'; a TREC run needs one id per query "
                "(give each query its own id)")
    assert proc.stderr.strip().splitlines() == [expected]
