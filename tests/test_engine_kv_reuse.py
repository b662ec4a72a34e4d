"""The transformers engine's KV reuse (closing chains from their cache, shared query prefixes)
against plain forward passes over the same bytes, with no cache at all."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from thinkrank.engines import GenerationRequest
from thinkrank.engines.transformers import TransformersEngine
from thinkrank.errors import InvalidInputError

from tolerances import LAYOUT_LOGPROB_TOL

HEAD = "Determine if the following passage is relevant to the query.\nQuery: what do cats eat\nPassage: "
PASSAGES = ["Cats eat mice and fish.", "The stock market fell sharply on Monday after the news.", "Dogs bark."]
OTHER = "Determine if the following passage is relevant to the query.\nQuery: stock news\nPassage: Markets.\n<think>"


def _cut_mid_token(generation) -> str:
    # A close rule whose text does not end on a token boundary of the chain: the cache must be
    # rolled back past the last shared token and the rest re-tokenised as a plain prompt would be.
    text = generation.text
    return text[: max(len(text) - 3, 0)] + "\n</think>"


@pytest.fixture(scope="module")
def smollm2(smollm2_path):
    tok = AutoTokenizer.from_pretrained(smollm2_path)
    model = AutoModelForCausalLM.from_pretrained(smollm2_path, dtype=torch.float32).eval()
    return tok, model


def _reference(model, tok, text: str, ids) -> list[float]:
    full = tok(text, return_tensors="pt").input_ids
    with torch.no_grad():
        logprobs = torch.log_softmax(model(full).logits[0, -1].float(), dim=-1)
    return [float(logprobs[t]) for t in ids]


def _answer_ids(tok) -> tuple[int, int]:
    return tuple(tok.encode(w, add_special_tokens=False)[0] for w in (" true", " false"))  # type: ignore[return-value]


def test_cut_chains_are_scored_from_the_cache_like_a_plain_forward_pass(smollm2_engine, smollm2):
    tok, model = smollm2
    ids = _answer_ids(tok)
    prompts = [HEAD + p + "\n<think>" for p in PASSAGES] + [OTHER]
    requests = [
        GenerationRequest(p, 9 + 3 * i, ("</think>",), answer_token_ids=ids, close=_cut_mid_token,
                          shared_prefix=HEAD if i < 3 else "")
        for i, p in enumerate(prompts)
    ]
    gens = smollm2_engine.generate(requests)
    assert {g.stop_reason for g in gens} <= {"length", "eos"} and "length" in {g.stop_reason for g in gens}
    for prompt, gen in zip(prompts, gens):
        ref = _reference(model, tok, prompt + _cut_mid_token(gen), ids)
        assert [gen.answer_logprobs[t] for t in ids] == pytest.approx(ref, abs=LAYOUT_LOGPROB_TOL)


def test_chains_ended_by_end_of_sequence_are_closed_from_the_cache(smollm2_path, smollm2):
    tok, _ = smollm2
    # "." as end-of-sequence makes every chain end by EOS within a few tokens.
    model = AutoModelForCausalLM.from_pretrained(smollm2_path, dtype=torch.float32).eval()
    model.generation_config.eos_token_id = tok.encode(".", add_special_tokens=False)[0]
    engine = TransformersEngine(model, tokenizer=AutoTokenizer.from_pretrained(smollm2_path), device="cpu")
    ids = _answer_ids(tok)
    prompts = [HEAD + p + "\n<think>" for p in PASSAGES]
    gens = engine.generate([
        GenerationRequest(p, 40, ("</think>",), answer_token_ids=ids, close=lambda g: g.text + "\n</think>")
        for p in prompts
    ])
    assert [g.stop_reason for g in gens] == ["eos"] * 3
    for prompt, gen in zip(prompts, gens):
        ref = _reference(model, tok, prompt + gen.text + "\n</think>", ids)
        assert [gen.answer_logprobs[t] for t in ids] == pytest.approx(ref, abs=LAYOUT_LOGPROB_TOL)


def test_closing_from_the_cache_never_refeeds_prompt_and_chain(smollm2_engine, smollm2):
    tok, _ = smollm2
    fed: list[int] = []
    hook = smollm2_engine.model.register_forward_pre_hook(
        lambda _m, _a, kw: fed.append(int(kw["input_ids"].numel())), with_kwargs=True
    )
    try:
        gen = smollm2_engine.generate([GenerationRequest(HEAD + PASSAGES[1] + "\n<think>", 12, ("</think>",),
                                                         answer_token_ids=_answer_ids(tok), close=_cut_mid_token)])[0]
    finally:
        hook.remove()
    assert gen.stop_reason == "length"
    prompt_tokens = gen.prompt_tokens
    # prefill + one token per step after the first + the closing pass over a few tokens only
    assert fed[0] == prompt_tokens and all(n == 1 for n in fed[1:-1])
    assert len(fed) == 12 + 1 and 1 <= fed[-1] <= 8


def test_shared_prefix_gives_the_same_chains_and_answers_as_full_prefills(smollm2_path, smollm2):
    tok, _ = smollm2
    engine = TransformersEngine(str(smollm2_path), device="cpu", batch_size=2)  # batches span two queries
    ids = _answer_ids(tok)
    prompts = [HEAD + p + "\n<think>" for p in PASSAGES] + [OTHER, OTHER.replace("Markets.", "Bonds.")]
    heads = [HEAD] * 3 + [OTHER.split("Passage: ")[0] + "Passage: "] * 2

    def run(shared: bool):
        return engine.generate([
            GenerationRequest(p, 10, ("</think>",), answer_token_ids=ids, close=_cut_mid_token,
                              shared_prefix=h if shared else "")
            for p, h in zip(prompts, heads)
        ])

    plain, shared = run(False), run(True)
    for a, b in zip(plain, shared):
        assert (a.token_ids, a.text, a.stop_reason, a.prompt_tokens) == (b.token_ids, b.text, b.stop_reason, b.prompt_tokens)
        assert [a.answer_logprobs[t] for t in ids] == pytest.approx([b.answer_logprobs[t] for t in ids], abs=LAYOUT_LOGPROB_TOL)


@pytest.mark.parametrize("stop", ["</think>", "sea.", "e", " the"])
def test_stop_strings_checked_on_token_ids_end_where_the_decoded_text_first_holds_them(smollm2_engine, smollm2, stop):
    tok, model = smollm2
    prompt = "Write two sentences about the sea and what lives in it.\n<think>"
    gen = smollm2_engine.generate([GenerationRequest(prompt, 40, (stop,))])[0]
    ids = tok(prompt, return_tensors="pt").input_ids
    ref_ids = model.generate(ids, max_new_tokens=40, do_sample=False)[0, ids.shape[1]:].tolist()
    # Reference: the shortest greedy prefix whose decoded text contains the stop string.
    for n in range(1, len(ref_ids) + 1):
        text = tok.decode(ref_ids[:n])
        if stop in text:
            assert (gen.stop_reason, gen.text, gen.num_tokens) == ("stop", text[: text.find(stop)], n)
            break
    else:
        assert gen.stop_reason in ("length", "eos") and stop not in gen.text


def test_each_batch_is_reported_as_it_finishes_and_what_is_left_is_batched_and_prefilled_as_before(smollm2_path, smollm2):
    # A resumed run judges what a killed one left after its first batches: those requests must get
    # exactly the results of the full call (same batches, same prefills), including a query left
    # with a single candidate.
    tok, _ = smollm2
    engine = TransformersEngine(str(smollm2_path), device="cpu", batch_size=2)
    ids = _answer_ids(tok)
    other = OTHER.split("Passage: ")[0] + "Passage: "
    prompts = [HEAD + p + "\n<think>" for p in PASSAGES] + [OTHER, OTHER.replace("Markets.", "Bonds.")]
    heads = [HEAD] * 3 + [other] * 2
    requests = [GenerationRequest(p, 6, ("</think>",), answer_token_ids=ids, close=_cut_mid_token, shared_prefix=h)
                for p, h in zip(prompts, heads)]
    events: list[tuple] = []
    full = engine.generate(requests, lambda n: events.append(("progress", n)),
                           on_batch=lambda idx, res: events.append(("batch", idx, res)))
    batches = [e[1] for e in events if e[0] == "batch"]
    assert sorted(i for b in batches for i in b) == list(range(5)) and all(len(b) <= 2 for b in batches)
    # Each batch is reported, with the very results the call returns, before progress counts it.
    assert [e[0] for e in events] == ["batch", "progress"] * len(batches)
    assert all(r is full[i] for e in events if e[0] == "batch" for i, r in zip(e[1], e[2]))
    for done in (1, 2):
        left = [i for b in batches[done:] for i in b]
        reported: list[list[int]] = []
        rest = engine.generate([requests[i] for i in left], on_batch=lambda idx, _: reported.append(idx))
        assert [[left[i] for i in b] for b in reported] == batches[done:]
        for i, g in zip(left, rest):
            f = full[i]
            assert (g.token_ids, g.text, g.stop_reason, g.answer_logprobs) == (f.token_ids, f.text, f.stop_reason,
                                                                               f.answer_logprobs)


# ---- next_token_logprobs with shared prefixes ------------------------------------------------
THIRD = "Determine if the following passage is relevant to the query.\nQuery: rivers of europe\nPassage: "


def _scoring_prompts() -> tuple[list[str], list[str]]:
    """Three queries (3, 2 and 1 candidates, mixed lengths, interleaved) and a prompt without a prefix."""
    other = OTHER.split("Passage: ")[0] + "Passage: "
    rows = [
        (HEAD, PASSAGES[1]), (other, "Markets."), (HEAD, PASSAGES[0]), (THIRD, "The Danube flows through ten countries."),
        ("", "Write one sentence about the sea."), (HEAD, PASSAGES[2]),
        (other, "Bonds and equities both rallied late in a volatile trading session."),
    ]
    return [h + p + "\n</think>" for h, p in rows], [h for h, _ in rows]


@pytest.mark.parametrize("static_cache", [False, True])
def test_next_token_logprobs_with_shared_prefixes_equal_plain_forward_passes(smollm2_path, smollm2, static_cache):
    tok, model = smollm2
    # batch_size 2: batches span queries, and one query's candidates span batches.
    engine = TransformersEngine(str(smollm2_path), device="cpu", batch_size=2, static_cache=static_cache)
    ids = _answer_ids(tok)
    prompts, heads = _scoring_prompts()
    fed: list[list[int]] = []
    hook = engine.model.register_forward_pre_hook(
        lambda _m, _a, kw: fed.extend(kw["input_ids"].tolist()), with_kwargs=True
    )
    reports: list[list[int]] = []
    try:
        got = engine.next_token_logprobs(prompts, ids, shared_prefixes=heads,
                                         on_batch=lambda idx, _: reports.append(idx))
    finally:
        hook.remove()
    for prompt, lp in zip(prompts, got):
        assert [lp[t] for t in ids] == pytest.approx(_reference(model, tok, prompt, ids), abs=LAYOUT_LOGPROB_TOL)
    assert sorted(i for b in reports for i in b) == list(range(len(prompts))) and all(len(b) <= 2 for b in reports)
    # Each query's prefix tokens were fed once, in a pass of their own, never again inside a row.
    for head in {h for h in heads if h}:
        # The prefix is the head's tokens that all its prompts start with ("Passage: "'s last
        # token may merge with the passage's first).
        head_ids = tok(head).input_ids
        while not all(tok(p).input_ids[: len(head_ids)] == head_ids for p, h in zip(prompts, heads) if h == head):
            head_ids = head_ids[:-1]
        assert len(head_ids) > 10
        holding = [row for row in fed if any(row[k : k + len(head_ids)] == head_ids for k in range(len(row)))]
        assert holding == [head_ids]


def test_next_token_logprobs_without_prefixes_and_a_lone_query_match_the_full_call(smollm2_engine, smollm2):
    tok, model = smollm2
    ids = _answer_ids(tok)
    prompts, heads = _scoring_prompts()
    plain = smollm2_engine.next_token_logprobs(prompts, ids)
    lone = smollm2_engine.next_token_logprobs([prompts[3]], ids, shared_prefixes=[heads[3]])  # one candidate alone
    for a, b in zip(plain, smollm2_engine.next_token_logprobs(prompts, ids, shared_prefixes=heads)):
        assert [a[t] for t in ids] == pytest.approx([b[t] for t in ids], abs=LAYOUT_LOGPROB_TOL)
    assert [lone[0][t] for t in ids] == pytest.approx(_reference(model, tok, prompts[3], ids), abs=LAYOUT_LOGPROB_TOL)
    with pytest.raises(InvalidInputError, match="shared_prefixes has 1 entries for 2 prompts"):
        smollm2_engine.next_token_logprobs(prompts[:2], ids, shared_prefixes=[HEAD])
