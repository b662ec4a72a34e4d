"""The vLLM engine scores closed chains from token ids (prefix-cache hits on the generated
chain): the ids it builds, checked on real generations. The scores they give on a real vLLM are
checked in ``test_engine_vllm_real.py``."""

from __future__ import annotations

import pytest

from test_engine_vllm import _output
from thinkrank.engines import GenerationRequest
from thinkrank.engines.vllm import scoring_ids, to_generation
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
