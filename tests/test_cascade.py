"""The Rank1 cascade against plain Rank1 (full reasoning, and reasoning off) on the same model."""

from __future__ import annotations

import pytest

from thinkrank import Rank1
from thinkrank.errors import InvalidInputError
from thinkrank.rerankers.cascade import Cascade, cascade_stats

from tolerances import LAYOUT_TOL

QUERY = "what do cats eat"
DOCS = [
    "Cats eat mice and fish.",
    "The stock market fell sharply on Monday after the news.",
    "Dogs bark.",
    "Kittens drink milk from their mother.",
    "A recipe for bread: flour, water, salt and yeast.",
    "Lions hunt zebras on the savanna.",
    "Cat food contains taurine, which cats need.",
]
BUDGET = 20  # SmolLM2 writes sentences, so cut chains keep text and reasoning changes the scores


@pytest.fixture(scope="module")
def plain(smollm2_engine):
    full = Rank1(engine=smollm2_engine, think_budget=BUDGET).rerank(QUERY, DOCS)
    quick = Rank1(engine=smollm2_engine, reasoning=False).rerank(QUERY, DOCS)
    return {j.index: j for j in full}, {j.index: j for j in quick}


def _band(quick: dict, first: int, last: int) -> str:
    """A band spec holding exactly the no-reasoning ranks first..last (0-based)."""
    scores = sorted((j.score for j in quick.values()), reverse=True)
    return f"{scores[last] - 1e-7:.9f}:{scores[first] + 1e-7:.9f}"


def _expected_order(quick: dict, full: dict, chosen: set[int]) -> list[int]:
    # The documented rule, written out: walk the no-reasoning order; each run of consecutive
    # chosen documents is re-sorted by its reasoned score; everything else stays put.
    order = sorted(quick, key=lambda i: (-quick[i].score, i))
    out, run = [], []
    for i in order + [None]:
        if i is not None and i in chosen:
            run.append(i)
            continue
        out += sorted(run, key=lambda k: (-full[k].score, k))
        run = []
        if i is not None:
            out.append(i)
    return out


@pytest.mark.parametrize("mode", ["top", "band", "top+band"])
def test_cascade_reasons_like_plain_rank1_on_the_documents_it_selects(smollm2_engine, plain, mode):
    full, quick = plain
    spec = {"top": "top=3", "band": f"band={_band(quick, 1, 4)}",
            "top+band": f"top=2,band={_band(quick, 4, 5)}"}[mode]  # two separate blocks
    cascade = Cascade.parse(spec)
    ranking = Rank1(engine=smollm2_engine, think_budget=BUDGET, cascade=spec).rerank(QUERY, DOCS)
    by_score = sorted(quick, key=lambda i: (-quick[i].score, i))
    chosen = set(by_score[: cascade.top_m or 0])
    if cascade.band:
        chosen |= {i for i, j in quick.items() if cascade.band[0] <= j.score <= cascade.band[1]}
    assert {j.index for j in ranking if j.reasoned} == chosen and len(chosen) == {"top": 3, "band": 4, "top+band": 4}[mode]
    for j in ranking:
        assert j.quick_score == pytest.approx(quick[j.index].score, abs=LAYOUT_TOL)
        if j.reasoned:  # exactly the judgment full reasoning gives this document
            ref = full[j.index]
            assert (j.reasoning, j.answer, j.forced, j.reasoning_tokens) == (ref.reasoning, ref.answer, ref.forced,
                                                                             ref.reasoning_tokens)
            assert (j.p_true, j.p_false) == pytest.approx((ref.p_true, ref.p_false), abs=LAYOUT_TOL)
        else:
            assert (j.score, j.reasoning, j.reasoning_tokens) == (pytest.approx(quick[j.index].score, abs=LAYOUT_TOL), "", 0)
    assert [j.index for j in ranking] == _expected_order(quick, full, chosen)
    stats = cascade_stats(ranking)
    assert (stats.candidates, stats.chains) == (len(DOCS), len(chosen))
    assert stats.chain_tokens == sum(full[i].reasoning_tokens for i in chosen)


def test_cascade_covering_every_candidate_ranks_like_full_reasoning(smollm2_engine, plain):
    full, quick = plain
    assert [j.index for j in full.values()] != sorted(quick, key=lambda i: (-quick[i].score, i))  # reasoning reorders
    ranking = Rank1(engine=smollm2_engine, think_budget=BUDGET, cascade=len(DOCS)).rerank(QUERY, DOCS)
    assert [j.index for j in ranking] == sorted(full, key=lambda i: (-full[i].score, i))
    assert cascade_stats(ranking).tokens_saved == 0


def test_cascade_specs_parse_or_fail_clearly(tiny_qwen_engine):
    assert Cascade.parse("20") == Cascade(top_m=20)
    assert Cascade.parse(" top = 10 , band=0.3:0.7") == Cascade(top_m=10, band=(0.3, 0.7))
    assert Cascade.parse("band=0.2:0.8") == Cascade(top_m=None, band=(0.2, 0.8))
    for bad, match in [("top=0", "top_m"), ("band=0.8:0.2", "band"), ("best=3", "cannot read cascade")]:
        with pytest.raises(InvalidInputError, match=match):
            Cascade.parse(bad)
    with pytest.raises(InvalidInputError, match="needs reasoning on"):
        Rank1(engine=tiny_qwen_engine, reasoning=False, cascade=5)
    assert Rank1(engine=tiny_qwen_engine, cascade="top=5").settings["cascade"] == {"top_m": 5, "band": None}


def test_cascade_rankings_are_cached_per_query(smollm2_engine, tmp_path):
    from thinkrank.rerankers.cached import CachedReranker

    cached = CachedReranker(Rank1(engine=smollm2_engine, think_budget=BUDGET, cascade=2), tmp_path / "c.sqlite")
    first = cached.rerank(QUERY, DOCS)
    again = cached.rerank(QUERY, DOCS)
    assert (cached.use.computed, cached.use.cached) == (1, 1)  # one whole ranking, read back once
    assert [(j.doc_id, j.score, j.reasoned, j.quick_score) for j in again] == [
        (j.doc_id, j.score, j.reasoned, j.quick_score) for j in first
    ]


def test_sampled_cascade_chains_match_plain_rank1_with_the_same_seed(smollm2_engine):
    options = dict(engine=smollm2_engine, think_budget=8, temperature=0.9, seed=7)
    full = {j.index: j for j in Rank1(**options).rerank(QUERY, DOCS)}
    ranking = Rank1(**options, cascade=3).rerank(QUERY, DOCS)
    reasoned = [j for j in ranking if j.reasoned]
    assert len(reasoned) == 3
    assert [j.reasoning for j in reasoned] == [full[j.index].reasoning for j in reasoned]


class _EngineIgnoringSharedPrefixes:
    """An engine that ignores ``shared_prefixes`` (as vLLM and servers do): prompts prefilled whole."""

    def __init__(self, inner):
        self.inner, self.name, self.model_name = inner, inner.name, inner.model_name
        self.tokenizer, self.context_length = inner.tokenizer, inner.context_length

    def generate(self, requests, progress=None, *, on_batch=None):
        return self.inner.generate(requests, progress, on_batch=on_batch)

    def next_token_logprobs(self, prompts, token_ids, progress=None, *, on_batch=None, shared_prefixes=None):
        return self.inner.next_token_logprobs(prompts, token_ids, progress, on_batch=on_batch)


def test_cascade_stage_one_with_a_shared_prefix_ranks_as_with_whole_prompts(smollm2_engine):
    queries = [(QUERY, DOCS), ("stock market news", DOCS[:3])]
    options = {"think_budget": 8, "cascade": 2}
    shared = Rank1(engine=smollm2_engine, **options).rerank_many(queries)
    whole = Rank1(engine=_EngineIgnoringSharedPrefixes(smollm2_engine), **options).rerank_many(queries)
    for a, b in zip(shared, whole):
        assert [(j.index, j.reasoned, j.reasoning) for j in a] == [(j.index, j.reasoned, j.reasoning) for j in b]
        assert [j.quick_score for j in a] == pytest.approx([j.quick_score for j in b], abs=LAYOUT_TOL)
        assert [j.score for j in a] == pytest.approx([j.score for j in b], abs=LAYOUT_TOL)
