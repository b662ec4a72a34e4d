"""One way to build a reranker: a frozen spec, validated on construction, and build_reranker."""

from __future__ import annotations

import dataclasses
import inspect
import re

import pytest

from thinkrank.engines import ENGINE_OPTIONS, ENGINES
from thinkrank.errors import InvalidInputError
from thinkrank.rerankers import Rank1, RankK, RankR1, RerankerSpec, build_reranker

from tolerances import LAYOUT_TOL

DOCS = ["Cats are small domesticated carnivorous mammals.", "The stock market fell today.", "Dogs bark."]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"mode": "sideways"}, "mode must be one of pointwise, listwise"),
        ({"engine": "tensorrt"}, "unknown engine 'tensorrt'"),
        ({"engine": "transformers", "engine_options": {"concurrency": 4}},
         "--concurrency is an option of the openai engine, but the engine is transformers"),
        ({"engine": "transformers", "engine_options": {"colour": "red"}}, "unknown engine option 'colour'"),
        ({"engine": "openai", "engine_options": {"concurrency": 0}}, "concurrency (--concurrency) must be >= 1"),
        ({"engine": "openai", "engine_options": {"timeout": "soon"}}, "timeout (--timeout) must be float"),
        ({"engine": "transformers", "engine_options": {"batch_size": True}}, "batch_size (--batch-size) must be int"),
        ({"think_budget": 0}, "think_budget must be >= 1"),
        ({"think_budget": "64"}, "think_budget must be int"),
        ({"reasoning": "yes"}, "reasoning must be bool"),
        ({"temperature": -1.0}, "temperature must be >= 0"),
        ({"prompt": "msmarco"}, "unknown prompt 'msmarco'"),
        ({"model": ""}, "model must be a non-empty string"),
        ({"mode": "listwise", "window": 1}, "window must be an int >= 2"),
        ({"mode": "listwise", "stride": 30}, "stride must be an int from 1 to window"),
        ({"mode": "listwise", "prompt": "no placeholders"}, "{query}"),
    ],
)
def test_a_bad_setting_is_refused_on_construction_naming_the_field(fields, message):
    with pytest.raises(InvalidInputError) as err:
        RerankerSpec(**fields)
    assert message in str(err.value)


def test_the_spec_is_frozen_and_replace_validates_again():
    spec = RerankerSpec(engine="transformers", engine_options={"device": "cpu", "batch_size": None})
    assert dict(spec.engine_options) == {"device": "cpu"}  # None counts as not given
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.think_budget = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        spec.engine_options["device"] = "cuda"  # type: ignore[index]
    assert spec.replace(think_budget=64).think_budget == 64
    with pytest.raises(InvalidInputError):
        spec.replace(think_budget=-1)


def test_options_of_the_other_mode_are_not_checked():
    assert RerankerSpec(mode="pointwise", window=0).window == 0
    assert RerankerSpec(mode="listwise", think_budget=0).think_budget == 0


def test_default_models_are_the_released_ones():
    assert RerankerSpec().model_name == "jhu-clsp/rank1-7b"
    assert RerankerSpec(mode="listwise").model_name == "hltcoe/Rank-K-32B"


@pytest.mark.parametrize("engine", sorted(ENGINE_OPTIONS))
def test_every_declared_engine_option_is_a_keyword_of_that_engine(engine):
    import importlib

    module, cls = {"transformers": ("thinkrank.engines.transformers", "TransformersEngine"),
                   "vllm": ("thinkrank.engines.vllm", "VLLMEngine"),
                   "openai": ("thinkrank.engines.openai", "OpenAIEngine")}[engine]
    params = inspect.signature(getattr(importlib.import_module(module), cls).__init__).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    assert engine in ENGINES
    for option in ENGINE_OPTIONS[engine]:
        assert option.name in params or takes_any, option.name


def test_build_reranker_gives_the_reranker_the_arguments_would(smollm2_path):
    spec = RerankerSpec(model=str(smollm2_path), engine="transformers", engine_options={"device": "cpu"},
                        reasoning=False, instruction="about animals", max_passage_tokens=64)
    built = build_reranker(spec)
    assert isinstance(built, Rank1)
    direct = Rank1(str(smollm2_path), engine="transformers", device="cpu", reasoning=False,
                   instruction="about animals", max_passage_tokens=64)
    assert built.settings == direct.settings
    got, want = built.rerank("what is a cat", DOCS), direct.rerank("what is a cat", DOCS)
    assert [j.doc_id for j in got] == [j.doc_id for j in want]
    assert [j.score for j in got] == pytest.approx([j.score for j in want], abs=LAYOUT_TOL)


def test_a_default_spec_builds_the_reranker_classes_defaults(smollm2_engine):
    # The spec's declared defaults and the classes' signature defaults come from one place, and
    # they are the documented values (README's table; Rank-K's windows of 20, step 10, top 100).
    documented = {"pointwise": (Rank1, {"think_budget": 1024, "reasoning": True, "max_passage_tokens": 2048}),
                  "listwise": (RankK, {"window": 20, "stride": 10, "depth": 100, "max_passage_tokens": 512,
                                       "max_tokens": 4096})}
    for mode, (cls, values) in documented.items():
        built = build_reranker(RerankerSpec(mode=mode), engine=smollm2_engine).settings
        assert built == cls(engine=smollm2_engine).settings
        assert {k: built[k] for k in values} == values


def test_build_reranker_can_share_a_loaded_engine(smollm2_engine):
    spec = RerankerSpec(model="unused", engine="openai", engine_options={"base_url": "http://127.0.0.1:1/v1"},
                        mode="listwise", window=3, stride=2, max_tokens=8)
    ranker = build_reranker(spec, engine=smollm2_engine)
    assert isinstance(ranker, RankK) and ranker.engine is smollm2_engine
    assert ranker.settings["window"] == 3 and ranker.settings["max_passage_tokens"] == 512  # the mode's default


def test_a_family_sets_the_mode_and_the_default_model():
    spec = RerankerSpec(family="reasonrank")
    assert spec.mode == "listwise" and spec.kind == "query" and spec.model_name == "liuwenhan/reasonrank-7B"
    assert RerankerSpec(family="qwen3-reranker").mode == "pointwise"
    assert RerankerSpec(family="qwen3-reranker").model_name == "Qwen/Qwen3-Reranker-0.6B"
    assert RerankerSpec(family="rank-k", mode="listwise").model_name == "hltcoe/Rank-K-32B"
    # reasonrank-8B samples as released; every other family is greedy unless told otherwise
    assert RerankerSpec(family="reasonrank", model="liuwenhan/reasonrank-8B").sampling_temperature == 0.6
    assert RerankerSpec(family="reasonrank").sampling_temperature == 0.0
    assert RerankerSpec(family="reasonrank", temperature=0.0, model="x/reasonrank-8B").sampling_temperature == 0.0


@pytest.mark.parametrize("fields, message", [
    ({"family": "nope"}, "unknown family 'nope'"),
    ({"family": "erank"}, "erank is not available"),
    ({"family": "rank-r1", "mode": "listwise"}, "the rank-r1 family is setwise"),
    ({"family": "qwen3-reranker", "mode": "listwise"}, "the qwen3-reranker family is pointwise"),
])
def test_a_family_the_spec_cannot_serve_is_refused_naming_why(fields, message):
    with pytest.raises(InvalidInputError, match=re.escape(message)):
        RerankerSpec(**fields)
    if "mode" not in fields:
        with pytest.raises(InvalidInputError, match=re.escape(message)):
            RerankerSpec(family=fields["family"], mode="pointwise")


def test_the_setwise_family_is_built_as_rank_r1_with_its_sort_options(tiny_qwen_engine):
    spec = RerankerSpec(family="rank-r1", model="unused", engine="openai",
                        engine_options={"base_url": "http://127.0.0.1:1/v1"}, method="bubblesort", k=2, num_child=3,
                        shuffle=False, max_tokens=5, max_passage_tokens=64, instruction="be brief")
    assert (spec.mode, spec.kind, spec.judges) == ("setwise", "set", "set")
    assert RerankerSpec(family="rank-r1").model_name == "ielabgroup/Rank-R1-7B-v0.1"
    assert RerankerSpec(mode="setwise").model_name == "ielabgroup/Rank-R1-7B-v0.1"
    ranker = build_reranker(spec, engine=tiny_qwen_engine)
    direct = RankR1(engine=tiny_qwen_engine, method="bubblesort", k=2, num_child=3, shuffle=False, max_tokens=5,
                    max_passage_tokens=64, instruction="be brief")
    assert isinstance(ranker, RankR1) and ranker.settings == direct.settings
    # the spec leaves the released defaults (2048 tokens, 512-token passages, seed 0) to RankR1
    assert build_reranker(RerankerSpec(family="rank-r1", model="unused"), engine=tiny_qwen_engine).settings == \
        RankR1(engine=tiny_qwen_engine).settings


@pytest.mark.parametrize("fields, message", [
    ({"method": "quicksort"}, "unknown setwise method 'quicksort'"),
    ({"k": 0}, "k must be >= 1"),
    ({"num_child": 20}, "num_child must be <= 19"),
    ({"max_tokens": 0}, "max_tokens must be >= 1"),
    ({"shuffle": "yes"}, "shuffle must be bool"),
])
def test_a_bad_setwise_option_is_refused_before_a_model_loads(fields, message):
    with pytest.raises(InvalidInputError, match=re.escape(message)):
        RerankerSpec(family="rank-r1", **fields)
    if "max_tokens" not in fields:  # the setwise-only options of another mode are not checked (nor used)
        RerankerSpec(family="rank-k", **fields)


def test_tfrank_has_no_released_model_so_the_spec_asks_for_one():
    with pytest.raises(InvalidInputError, match="tfrank family has no released model"):
        _ = RerankerSpec(family="tfrank").model_name


def test_a_listwise_family_is_built_with_its_own_windows_and_defaults(tiny_qwen_engine):
    spec = RerankerSpec(model="unused", engine="openai", engine_options={"base_url": "http://127.0.0.1:1/v1"},
                        family="reasonrank", window=3, stride=2)
    ranker = build_reranker(spec, engine=tiny_qwen_engine)
    direct = RankK(engine=tiny_qwen_engine, family="reasonrank", window=3, stride=2)
    assert isinstance(ranker, RankK)
    assert ranker.settings == direct.settings
    assert ranker.settings["family"] == "reasonrank" and ranker.settings["max_tokens"] == 3172  # released budget


def test_a_pointwise_family_is_built_with_its_released_generation(tiny_qwen_engine):
    spec = RerankerSpec(model="unused", engine="openai", engine_options={"base_url": "http://127.0.0.1:1/v1"},
                        family="qwen3-reranker")
    assert spec.mode == "pointwise" and not spec.reasoning and spec.think_budget == 0  # no chain, as released
    assert RerankerSpec(family="tfrank", model="x").think_budget == 128
    ranker = build_reranker(spec, engine=tiny_qwen_engine)
    direct = Rank1(engine=tiny_qwen_engine, family="qwen3-reranker")
    assert ranker.settings == direct.settings and ranker.settings["family"] == "qwen3-reranker"
    got, want = ranker.rerank("what is a cat", DOCS), direct.rerank("what is a cat", DOCS)
    assert [j.score for j in got] == pytest.approx([j.score for j in want], abs=LAYOUT_TOL)
    with pytest.raises(InvalidInputError, match="cascade"):
        RerankerSpec(family="qwen3-reranker", cascade="top=2")
