"""The vLLM engine scores closed chains from token ids (prefix-cache hits on the generated
chain), checked without vLLM: real generations and a real model stand in for vLLM's sampler."""

from __future__ import annotations

import pytest
import torch

from test_engine_vllm import BY_IDS, Sampler, _answer_ids, _output, hf  # noqa: F401  (hf is a fixture)
from thinkrank.engines import GenerationRequest
from thinkrank.engines.transformers import HFTokenizer
from thinkrank.engines.vllm import VLLMEngine, scoring_ids, to_generation
from thinkrank.rerankers.pointwise import close_chain

PROMPT = "Determine if the following passage is relevant to the query.\nQuery: cats\nPassage: Cats eat fish.\n<think>"


@pytest.fixture(scope="module")
def chains(smollm2_engine):
    """A chain that did not close (cut to its last sentence) and one that wrote the stop string, as vLLM would report them
    (its token ids include the stop string's tokens; its text does not)."""
    cut = smollm2_engine.generate([GenerationRequest(PROMPT, 20)])[0]
    tok = smollm2_engine.tokenizer
    text = " The passage says cats eat fish."
    closed_ids = tok.encode(text + "</think>")
    return tok, cut, to_generation(_output(text, closed_ids, "stop", "</think>", tok.encode_prompt(PROMPT)))


def test_scoring_ids_keep_the_generated_chain_and_spell_the_closed_text(chains):
    tok, cut, stopped = chains
    prompt_ids = tok.encode_prompt(PROMPT)
    for gen in (cut, stopped):
        closed = close_chain(gen)
        ids = scoring_ids(tok, prompt_ids, gen.token_ids, closed)
        assert tok.decode(ids) == tok.decode(prompt_ids) + closed
        kept = next(k for k in range(len(gen.token_ids), -1, -1) if closed.startswith(tok.decode(gen.token_ids[:k])))
        assert kept > 0 and ids[: len(prompt_ids) + kept] == prompt_ids + gen.token_ids[:kept]
    # A chain that wrote "</think>" is scored on all of its own tokens: nothing re-tokenised.
    assert scoring_ids(tok, prompt_ids, stopped.token_ids, close_chain(stopped)) == prompt_ids + stopped.token_ids
    assert not cut.stopped and close_chain(cut) != cut.text + "\n</think>"  # really cut


def test_generate_fills_answers_from_token_id_prompts(chains, hf):  # noqa: F811
    tok, model = hf
    _, cut, stopped = chains
    sampler = Sampler(tok, model, "raw")
    engine = object.__new__(VLLMEngine)  # the parts of the engine that need no vLLM
    engine._tok, engine._fields, engine._run = HFTokenizer(tok), BY_IDS, sampler
    ids = tuple(_answer_ids(tok))
    requests = [GenerationRequest(PROMPT, 20, ("</think>",), answer_token_ids=ids, close=close_chain)] * 2
    results = [cut, stopped]
    prompt_ids = [tok.encode(PROMPT)] * 2
    engine._close(requests, results, prompt_ids, [0, 1])
    assert sampler.calls == [2]  # one batched scoring pass
    for gen in results:
        full = torch.tensor([scoring_ids(engine._tok, prompt_ids[0], gen.token_ids, close_chain(gen))])
        with torch.no_grad():
            lp = torch.log_softmax(model(full).logits[0, -1].float(), -1)
        diff = gen.answer_logprobs[ids[0]] - gen.answer_logprobs[ids[1]]
        assert diff == pytest.approx(float(lp[ids[0]] - lp[ids[1]]), abs=1e-4)
