"""The family registry: every CLI name resolves to its kind, source and serving reranker;
unknown names and ERank are refused with the reason; ``thinkrank families --json`` lists them."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from thinkrank.errors import InvalidInputError
from thinkrank.families import FAMILIES, family_names, get_family

NAMES = ["rank1", "rank-k", "qwen3-reranker", "reasonrank", "rank-r1", "tfrank", "erank"]  # the list


def test_every_family_resolves_to_the_reranker_of_its_kind():
    assert family_names() == NAMES
    assert family_names(available_only=True) == NAMES[:-1]
    served = {"rank1": "Rank1", "rank-k": "RankK", "qwen3-reranker": "Rank1", "reasonrank": "RankK",
              "rank-r1": "RankR1", "tfrank": "Rank1"}
    for name, cls in served.items():
        entry = get_family(name)
        assert entry.name == name and entry.unavailable is None
        reranker = entry.reranker_class()
        assert reranker.__name__ == cls and reranker.kind == entry.kind
        assert len(entry.source.commit) == 40 and "/" in entry.source.repository and entry.source.path
        module = entry.module()
        if module is not None:  # the module's own declarations agree with the table
            pair = getattr(module, "FAMILY", None)  # pair families declare a PairFamily, the others constants
            kind, default = (pair.kind, pair.default_model) if pair else (module.KIND, module.DEFAULT_MODEL)
            assert (kind, default) == (entry.kind, entry.default_model)
            assert module.SOURCE.commit == entry.source.commit and module.SOURCE.repository == entry.source.repository
    # released defaults differ from the class defaults, by the class's own argument names
    import inspect

    for name in served:
        entry = get_family(name)
        params = inspect.signature(entry.reranker_class().__init__).parameters
        for key, value in entry.defaults.items():
            assert key in params and params[key].default != value, (name, key)


def test_unknown_names_and_erank_are_refused_with_the_reason():
    with pytest.raises(InvalidInputError, match="unknown family 'rankgpt': use one of rank1, rank-k, qwen3-reranker"):
        get_family("rankgpt")
    with pytest.raises(InvalidInputError, match="erank is not available: its released scoring code"):
        get_family("erank")
    assert FAMILIES["erank"].unavailable and FAMILIES["erank"].kind == "pair"


def test_thinkrank_families_json_and_table():
    from thinkrank.cli import _register, app

    _register()
    result = CliRunner().invoke(app, ["families", "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["name"] for r in rows] == NAMES
    reasonrank = rows[3]
    assert reasonrank["kind"] == "query" and reasonrank["reranker"] == "RankK"
    assert reasonrank["source"]["commit"] == "06721fd6ef3766c0e00d59a87d2696a0b4b0c17a"
    assert reasonrank["defaults"] == {"max_tokens": 3172} and reasonrank["available"] is True
    assert rows[-1]["available"] is False and "could not be read" in rows[-1]["unavailable"]
    table = CliRunner().invoke(app, ["families"], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "8421BCD/ReasonRank @ 06721fd6ef37" in table.stdout
    assert "erank (unavailable)" in table.stdout
