"""Think tokens, stops and forced answers as the released Rank1 code has them, on every engine.

The released models have ``<think>``/``</think>`` as added *special* tokens. The models here
are random-weight Qwen2-shaped models over the Qwen2.5 tokenizer with those two tokens added as
special, whose weights are set so that their greedy chain after ``<think>`` is a known token
sequence (see :func:`thinkrank.testing.models.tiny_qwen_think_dir`): one closes its chain with
the special ``</think>``, one ends it with end-of-sequence. Everything else in them, including
the answer distribution, is random and depends on the whole context.

Expected scores come from the released rule as stated below (not from thinkrank's helpers) and
a plain forward pass of an independently loaded copy of the model.
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from thinkrank import Rank1
from thinkrank.engines import GenerationRequest
from thinkrank.engines.openai import OpenAIEngine
from thinkrank.engines.transformers import TransformersEngine
from thinkrank.engines.vllm import sampling_kwargs, to_generation
from thinkrank.testing.models import tiny_qwen_think_dir
from thinkrank.testing.openai_server import EngineServer, ServerOptions, serving

from tolerances import LAYOUT_TOL

CLOSES = (" The", " passage", " fits", ".", " Yes", "</think>")  # 6 tokens, then the chain is closed
ENDS = (" The", " passage", " ends", ".", "<|endoftext|>")  # ends with end-of-sequence instead
QUERY = "what do cats eat"
DOCS = ["Cats are obligate carnivores and eat meat.", "The stock market fell sharply on Tuesday."]


def released_prompt(query: str, passage: str) -> str:
    """rank1.py ``return_prompt`` of github.com/orionw/rank1, restated."""
    return (
        "Determine if the following passage is relevant to the query. Answer only with 'true' or 'false'.\n"
        f"Query: {query}\nPassage: {passage}\n<think>"
    )


def released_forced(prompt: str, chain: str) -> tuple[str, str]:
    """The released forced answer (rank1.py ``_fix_incomplete_responses``), restated: strip the
    chain's end; unless it ends with . ! or ?, cut after the last of them (whole when none);
    strip; score ``prompt + "\\n" + chain + "\\n</think>"``. Returns (cut chain, scored text)."""
    text = chain.rstrip()
    if not text.endswith((".", "!", "?")):
        last = max(text.rfind("."), text.rfind("!"), text.rfind("?"))
        if last != -1:
            text = text[: last + 1]
    text = text.strip()
    return text, f"{prompt}\n{text}\n</think>"


class Reference:
    """The model loaded again with plain transformers; a score is one unpadded forward pass."""

    def __init__(self, path):
        self.tok = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        self.close_id = self.tok.convert_tokens_to_ids("</think>")
        self.true_id, self.false_id = self.tok.encode(" true")[0], self.tok.encode(" false")[0]

    def score(self, text: str) -> float:
        ids = self.tok(text, return_tensors="pt").input_ids
        with torch.no_grad():
            lp = torch.log_softmax(self.model(ids).logits[0, -1].float(), dim=-1)
        return float(torch.sigmoid(lp[self.true_id] - lp[self.false_id]))


@pytest.fixture(scope="module")
def closes_dir():
    return tiny_qwen_think_dir(CLOSES)


@pytest.fixture(scope="module")
def ends_dir():
    return tiny_qwen_think_dir(ENDS)


@pytest.fixture(scope="module")
def closes(closes_dir):
    return TransformersEngine(str(closes_dir), device="cpu"), Reference(closes_dir)


@pytest.fixture(scope="module")
def ends(ends_dir):
    return TransformersEngine(str(ends_dir), device="cpu"), Reference(ends_dir)


def test_the_test_model_has_special_think_tokens_and_writes_its_chain(closes):
    engine, ref = closes
    assert ref.tok.convert_ids_to_tokens(ref.tok.encode("<think></think>")) == ["<think>", "</think>"]
    assert ref.tok.decode(ref.tok.encode("a</think>"), skip_special_tokens=True) == "a"  # special: skipped
    gen = engine.generate([GenerationRequest(released_prompt(QUERY, DOCS[0]), 16)])[0]
    assert ref.tok.convert_ids_to_tokens(gen.token_ids[:6]) == ["ĠThe", "Ġpassage", "Ġfits", ".", "ĠYes", "</think>"]


def _check_closed(ranking, ref):
    for j in ranking:
        assert not j.forced and j.reasoning == "".join(CLOSES[:-1])
        text = released_prompt(QUERY, DOCS[j.index]) + j.reasoning + "</think>"
        assert ref.tok(text).input_ids[-1] == ref.close_id  # scored after the special token itself
        assert j.score == pytest.approx(ref.score(text), abs=LAYOUT_TOL)


def test_transformers_engine_stops_on_the_special_think_close(closes):
    engine, ref = closes
    _check_closed(Rank1(engine=engine, think_budget=16).rerank(QUERY, DOCS), ref)


def test_openai_engine_asks_a_vllm_like_server_to_keep_special_tokens(closes, closes_dir):
    """The test server skips special tokens unless asked not to, as vLLM and SGLang do."""
    engine, ref = closes
    with serving(EngineServer(engine, "think").app) as url:
        client = OpenAIEngine("think", base_url=url, tokenizer=str(closes_dir))
        _check_closed(Rank1(engine=client, think_budget=16).rerank(QUERY, DOCS), ref)
        # What happens without it: </think> never shows, every chain runs to the budget.
        skipping = OpenAIEngine("think", base_url=url, tokenizer=str(closes_dir), keep_special_tokens=False)
        assert all(j.forced for j in Rank1(engine=skipping, think_budget=16).rerank(QUERY, DOCS))
        client.close()
        skipping.close()


def test_vllm_requests_keep_special_tokens_so_the_stop_string_can_match(closes):
    engine, ref = closes
    kw = sampling_kwargs(GenerationRequest(released_prompt(QUERY, DOCS[0]), 16, ("</think>",)))
    assert kw["stop"] == ["</think>"] and kw["skip_special_tokens"] is False
    assert kw["spaces_between_special_tokens"] is False
    # vLLM matches stop strings in the text it detokenized with these settings.
    ids = engine.generate([GenerationRequest(released_prompt(QUERY, DOCS[0]), 16)])[0].token_ids
    text = ref.tok.decode(ids, skip_special_tokens=kw["skip_special_tokens"],
                          spaces_between_special_tokens=kw["spaces_between_special_tokens"])
    assert text.startswith(" The passage fits. Yes</think>")


def _check_forced(ranking, ref, chain):
    for j in ranking:
        cut, text = released_forced(released_prompt(QUERY, DOCS[j.index]), chain)
        assert j.forced and j.reasoning == cut
        assert j.score == pytest.approx(ref.score(text), abs=LAYOUT_TOL)


def test_a_chain_cut_by_the_budget_gets_the_released_forced_answer(closes, closes_dir):
    engine, ref = closes
    chain = " The passage fits. Yes"  # 5 tokens: cut after "." -> "The passage fits."
    _check_forced(Rank1(engine=engine, think_budget=5).rerank(QUERY, DOCS), ref, chain)
    with serving(EngineServer(engine, "think").app) as url:
        client = OpenAIEngine("think", base_url=url, tokenizer=str(closes_dir))
        _check_forced(Rank1(engine=client, think_budget=5).rerank(QUERY, DOCS), ref, chain)
        client.close()
    # No sentence end at all: the chain is kept whole.
    _check_forced(Rank1(engine=engine, think_budget=2).rerank(QUERY, DOCS), ref, " The passage")


def test_end_of_sequence_is_a_forced_answer_on_every_engine(ends, ends_dir):
    engine, ref = ends
    chain = " The passage ends."
    _check_forced(Rank1(engine=engine, think_budget=16).rerank(QUERY, DOCS), ref, chain)
    for options in (ServerOptions(), ServerOptions(report_stop_reason=False)):  # vLLM-like, llama.cpp-like
        with serving(EngineServer(engine, "ends", options).app) as url:
            client = OpenAIEngine("ends", base_url=url, tokenizer=str(ends_dir))
            _check_forced(Rank1(engine=client, think_budget=16).rerank(QUERY, DOCS), ref, chain)
            assert client.server_reports_stops() is options.report_stop_reason
            client.close()


def test_vllm_outputs_tell_a_matched_stop_from_end_of_sequence():
    from types import SimpleNamespace as NS

    def output(finish, stop_reason):
        return NS(outputs=[NS(text="x", token_ids=[1], finish_reason=finish, stop_reason=stop_reason)],
                  prompt_token_ids=[1, 2])

    assert to_generation(output("stop", "</think>")).stop_reason == "stop"
    assert to_generation(output("stop", None)).stop_reason == "eos"
    assert to_generation(output("length", None)).stop_reason == "length"
