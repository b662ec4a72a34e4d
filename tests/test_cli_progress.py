"""The CLI's progress bar (rerank, evaluate, distill generate): counts shown on stderr, silent with --quiet."""

from __future__ import annotations

from thinkrank.cli.common import ProgressBar


def test_advancing_against_a_total_shows_the_count(capsys):
    with ProgressBar("traces", quiet=False, total=4) as bar:
        bar.advance(3)
        bar.advance()
    err = capsys.readouterr().err
    assert "traces" in err and "4/4" in err


def test_as_a_done_total_callback_it_follows_the_caller(capsys):
    with ProgressBar("judging", quiet=False) as bar:
        bar(1, 5)
        bar(2, 5)
    err = capsys.readouterr().err
    assert "judging" in err and "2/5" in err


def test_quiet_prints_nothing_and_still_accepts_updates(capsys):
    with ProgressBar("reranking", quiet=True, total=3) as bar:
        bar.advance(2)
        bar(3, 3)
    assert capsys.readouterr() == ("", "")
