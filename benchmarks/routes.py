"""The compared routes for Rank1 pointwise scoring, shared by the CPU and GPU speed benchmarks.

Every route gets the same prompts (``build_rank1_prompt``), the same think budget, the same
greedy decoding and the same answer rule (``close_chain``: a chain that wrote ``</think>`` is
scored right after it; any other is closed by the released rule, ``"\\n" + chain cut after its
last . ! ? + "\\n</think>"``), and returns one score per prompt plus the chain tokens it generated.

* ``thinkrank``: ``Rank1`` on the transformers engine; ``thinkrank-no-reuse``: the same without
  forced answers from the KV cache and shared prefixes (a second pass over prompt + chain);
  ``thinkrank-static``: the engine's fixed-shape decode loop (``static_cache=True``);
  ``thinkrank-compiled``: the same with its decode step ``torch.compile``-d (``compile=True``:
  inductor with CUDA graphs on a GPU, inductor on CPU); ``thinkrank-cudagraphs`` (CUDA only):
  the traced step replayed as CUDA graphs without inductor, which compiles in seconds.
* ``generate``: what a capable user writes on plain transformers: prompts sorted by length,
  ``model.generate`` batched with left padding and ``stop_strings=["</think>"]``, then one
  batched scoring forward pass over prompt + closed chain.
* ``static``: the same with ``cache_implementation="static"`` (on CUDA, transformers then
  compiles the decode step itself; on CPU it does not).
* ``static-manual``: the other way transformers documents: a static cache and the model's
  ``forward`` wrapped in ``torch.compile(mode="reduce-overhead")`` by the user, transformers'
  own compilation switched off (``disable_compile``); the scoring pass runs uncompiled.
* ``-nostop`` variants leave ``stop_strings`` out: the fastest plain route when chains never
  write ``</think>`` (random weights), though a real Rank1 model needs the stop.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from thinkrank import Rank1
from thinkrank.engines import Generation
from thinkrank.prompts.rank1 import build_rank1_prompt
from thinkrank.rerankers.pointwise import close_chain

STOP = "</think>"


@dataclass
class RouteResult:
    route: str
    seconds: float
    docs: int
    chain_tokens: int
    scores: list[float]
    cpu_seconds: float = 0.0  # this process's CPU time: steadier than wall time on a shared machine
    chain_ids: list[list[int]] | None = None  # per prompt, the generated ids up to its stop (chain_ids())
    closed: list[str] | None = None  # per prompt, the text whose next token was scored (generate routes)

    @property
    def docs_per_s(self) -> float:
        return self.docs / self.seconds

    @property
    def tokens_per_s(self) -> float:
        return self.chain_tokens / self.seconds


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


Requests = list[tuple[str, list[str]]]
"""(query, candidate passages) per query."""


def dl19_requests(data_dir: Path, queries: int, per_query: int) -> Requests:
    """The first ``queries`` DL19 queries with their top ``per_query`` BM25 candidates (real text)."""
    qtext = {q["_id"]: q["text"] for q in map(json.loads, (data_dir / "queries.jsonl").read_text().splitlines())}
    ranked: dict[str, list[str]] = {}
    for line in (data_dir / "runs" / "bm25.trec").read_text().splitlines():
        qid, _, doc, *_ = line.split()
        ranked.setdefault(qid, []).append(doc)
    wanted = [q for q in ranked if q in qtext][:queries]
    need = {d for q in wanted for d in ranked[q][:per_query]}
    corpus = {}
    for line in (data_dir / "corpus.jsonl").read_text().splitlines():
        d = json.loads(line)
        if d["_id"] in need:
            corpus[d["_id"]] = f"{d['title']} {d['text']}" if d.get("title") else d["text"]
    return [(qtext[q], [corpus[d] for d in ranked[q][:per_query] if d in corpus]) for q in wanted]


def prompts_of(requests: Requests) -> list[str]:
    return [build_rank1_prompt(q, p) for q, ps in requests for p in ps]


class _NoReuse:
    """The engine as Rank1 used it before KV reuse (the ablation), through the public protocol
    only: requests lose their close rule and shared prefix, ``next_token_logprobs`` its shared
    prefixes, so a cut chain's answer is read by a second pass over prompt + chain and every
    prompt is prefilled whole."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def generate(self, requests: Any, progress: Any = None, *, on_batch: Any = None) -> list[Generation]:
        plain = [replace(r, close=None, shared_prefix="") for r in requests]
        return self._engine.generate(plain, progress, on_batch=on_batch)

    def next_token_logprobs(self, prompts: Any, token_ids: Any, progress: Any = None, *, on_batch: Any = None,
                            shared_prefixes: Any = None) -> list[dict[int, float]]:
        return self._engine.next_token_logprobs(prompts, token_ids, progress, on_batch=on_batch)


THINKRANK_OPTIONS = {"thinkrank": {}, "thinkrank-no-reuse": {}, "thinkrank-static": {"static_cache": True},
                     "thinkrank-compiled": {"compile": True},
                     # CUDA only: CUDA graphs of the traced step without inductor (compiles in seconds)
                     "thinkrank-cudagraphs": {"compile": {"backend": "cudagraphs"}}}
"""The thinkrank routes and the transformers-engine options each one runs with."""


def thinkrank_engine(model: Any, tok: Any, route: str, device: str, batch: int) -> Any:
    """A transformers engine over an already loaded ``model`` for a thinkrank route."""
    from thinkrank.engines.transformers import TransformersEngine

    engine = TransformersEngine(model, tokenizer=tok, device=device, batch_size=batch, **THINKRANK_OPTIONS[route])
    engine.max_batch_tokens = 10**9  # batch size is the only cap, as in the generate routes
    return engine


def thinkrank_route(engine: Any, requests: Requests, budget: int, *, reuse: bool = True,
                    name: str | None = None) -> RouteResult:
    generated: dict[str, list[int]] = {}  # prompt -> generated ids, kept to compare chains across routes
    recording = _Recording(engine, generated)
    reranker = Rank1(engine=recording if reuse else _NoReuse(recording), think_budget=budget, max_passage_tokens=None)
    _sync(engine.device)
    start, cpu = time.perf_counter(), time.process_time()
    rankings = reranker.rerank_many(requests)
    _sync(engine.device)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    judged = [j for r in rankings for j in sorted(r, key=lambda j: j.index)]
    tok = engine.tokenizer.hf
    ids = [chain_ids(tok, generated[p], eos_ids(engine.model, tok)) for p in prompts_of(requests)]
    return RouteResult(name or ("thinkrank" if reuse else "thinkrank-no-reuse"), seconds, len(judged), sum(j.reasoning_tokens for j in judged),
                       [j.score for j in judged], cpu, ids)


class _Recording:
    """The engine, passed through, keeping each prompt's generated ids in ``sink``."""

    def __init__(self, engine: Any, sink: dict[str, list[int]]) -> None:
        self._engine, self._sink = engine, sink

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def generate(self, requests: Any, progress: Any = None, *, on_batch: Any = None) -> list[Generation]:
        gens = self._engine.generate(requests, progress, on_batch=on_batch)
        self._sink.update((r.prompt, g.token_ids) for r, g in zip(requests, gens))
        return gens


def chain_ids(tok: Any, ids: list[int], eos: set[int]) -> list[int]:
    """The generated ids a route's chain consists of, whatever it did after: up to and with the
    first end-of-sequence, else up to the token that completed ``</think>``, else all (the
    budget). Routes generate the same chain exactly when these are equal."""
    n = next((i for i, t in enumerate(ids) if t in eos), None)
    if n is not None:
        return ids[: n + 1]
    if STOP not in tok.decode(ids, skip_special_tokens=False):
        return ids
    return next(ids[:k] for k in range(1, len(ids) + 1) if STOP in tok.decode(ids[:k], skip_special_tokens=False))


def eos_ids(model: Any, tok: Any) -> set[int]:
    """The ids that end a sequence: the tokenizer's and the generation config's."""
    config = model.generation_config.eos_token_id
    return {tok.eos_token_id, *([config] if isinstance(config, int) else (config or []))}


def _chain(tok: Any, ids: list[int], eos: set[int]) -> Generation:
    """A ``generate`` row (padding stripped) as a Generation: stopped at ``</think>``, ended by
    end-of-sequence, or cut at the budget."""
    n = next((i for i, t in enumerate(ids) if t in eos), None)
    body = ids if n is None else ids[:n]
    text = tok.decode(body, skip_special_tokens=False)
    if STOP in text:
        return Generation(text[: text.find(STOP)], "stop", len(body))
    return Generation(text, "length" if n is None else "eos", len(body) + (n is not None))


def generate_route(
    model: Any, tok: Any, prompts: Sequence[str], budget: int, batch: int, true_id: int, false_id: int,
    *, static: bool = False, stop: bool = True, device: str = "cpu", pad_to: int | None = None,
    compile_how: str = "auto",
) -> RouteResult:
    """``pad_to``: pad every batch to this many prompt tokens (fixed shapes, so a compiled
    static-cache decode step is not recompiled per batch). ``compile_how`` (static only):
    ``"auto"``: transformers' default (it compiles its decode step on CUDA); ``"manual"``: the user
    compiles ``model.forward`` (see the module docstring); ``"none"``: a static cache, no compile."""
    tok.padding_side = "left"
    eos = eos_ids(model, tok)
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    closed: dict[int, str] = {}
    raw: dict[int, list[int]] = {}
    tokens = 0
    _sync(device)
    start, cpu = time.perf_counter(), time.process_time()
    with torch.inference_mode():
        for b in range(0, len(order), batch):
            idx = order[b : b + batch]
            padding = {"padding": "max_length", "max_length": pad_to} if pad_to else {"padding": True}
            enc = tok([prompts[i] for i in idx], return_tensors="pt", **padding).to(device)
            extra: dict[str, Any] = _static_options(compile_how) if static else {}
            if stop:
                extra.update(stop_strings=[STOP], tokenizer=tok)
            with _compiled_forward(model, static and compile_how == "manual"):
                out = model.generate(**enc, max_new_tokens=budget, do_sample=False, pad_token_id=tok.pad_token_id,
                                     temperature=None, top_p=None, top_k=None, **extra)
            for r, i in enumerate(idx):
                raw[i] = out[r, enc.input_ids.shape[1]:].tolist()
                gen = _chain(tok, raw[i], eos)
                tokens += gen.num_tokens
                closed[i] = prompts[i] + close_chain(gen)
        scores = _score(model, tok, [closed[i] for i in order], batch, true_id, false_id, device)
    _sync(device)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    by_input = dict(zip(order, scores))
    name = ("static" + ("" if compile_how == "auto" else f"-{compile_how}") if static else "generate") + \
        ("" if stop else "-nostop")
    return RouteResult(name, seconds, len(prompts), tokens, [by_input[i] for i in range(len(prompts))], cpu,
                       [chain_ids(tok, raw[i], eos) for i in range(len(prompts))],
                       [closed[i] for i in range(len(prompts))])


def _static_options(compile_how: str) -> dict[str, Any]:
    if compile_how == "auto":  # transformers' default: it compiles the decode step on CUDA, not on CPU
        return {"cache_implementation": "static"}
    return {"cache_implementation": "static", "disable_compile": True}


_FORWARDS: dict[int, Any] = {}  # id(model) -> its compiled forward, kept so graphs are reused across calls


@contextlib.contextmanager
def _compiled_forward(model: Any, on: bool):
    """``model.forward`` compiled by the user for the duration (the scoring pass stays eager)."""
    if not on:
        yield
        return
    own = model.__dict__.get("forward")  # set on the instance (e.g. by accelerate hooks), else None
    if id(model) not in _FORWARDS:
        mode = "reduce-overhead" if next(model.parameters()).is_cuda else None
        _FORWARDS[id(model)] = torch.compile(model.forward, mode=mode)
    model.forward = _FORWARDS[id(model)]
    try:
        yield
    finally:
        # Restored as it was: a bound method left in the instance's __dict__ would fail the
        # guards of other compiled code that calls this model (the thinkrank-compiled route).
        if own is None:
            del model.forward
        else:
            model.forward = own


def _score(model: Any, tok: Any, texts: list[str], batch: int, true_id: int, false_id: int, device: str) -> list[float]:
    """One batched forward pass per batch: the answer after each closed text."""
    scores: list[float] = []
    for b in range(0, len(texts), batch):
        enc = tok(texts[b : b + batch], return_tensors="pt", padding=True).to(device)
        positions = (enc.attention_mask.cumsum(-1) - 1).clamp(min=0)  # left padding must not shift positions
        logits = model(**enc, position_ids=positions, logits_to_keep=1).logits[:, -1].float()
        lp = torch.log_softmax(logits, dim=-1)
        diff = (lp[:, true_id] - lp[:, false_id]).tolist()
        scores += [1.0 / (1.0 + math.exp(-d)) for d in diff]
    return scores


def agreement(a: RouteResult, b: RouteResult) -> float:
    """Largest score difference between two routes over the same prompts."""
    return max(abs(x - y) for x, y in zip(a.scores, b.scores))


@dataclass
class ChainAgreement:
    """How a route's chains and scores compare with a reference route's, pair by pair: scores
    can only be expected to agree where both generated the same chain."""

    identical: int  # pairs whose generated ids equal the reference's
    pairs: int
    max_diff_identical: float  # nan when no pair has an identical chain
    max_diff_divergent: float  # nan when every chain is identical
    first_divergence: list[int]  # per divergent pair, the index of the first differing generated token


def chain_agreement(a: RouteResult, ref: RouteResult) -> ChainAgreement:
    pairs = list(zip(a.chain_ids or [], ref.chain_ids or []))
    same = [x == y for x, y in pairs]
    diffs = [abs(x - y) for x, y in zip(a.scores, ref.scores)]

    def pick(want: bool) -> float:
        return max((d for d, s in zip(diffs, same) if s == want), default=float("nan"))

    first = [next((k for k, (u, v) in enumerate(zip(x, y)) if u != v), min(len(x), len(y)))
             for x, y in pairs if x != y]
    return ChainAgreement(sum(same), len(diffs), pick(True), pick(False), first)


def chain_cells(c: ChainAgreement | None) -> str:
    """The three table cells of a chain comparison: identical chains, and the largest score
    difference over identical and over divergent ones ("-" where there is no such pair)."""
    if c is None:
        return "- | - | -"

    def fmt(x: float) -> str:
        return "-" if math.isnan(x) else f"{x:.1e}"  # nan: no such pair

    return f"{c.identical}/{c.pairs} | {fmt(c.max_diff_identical)} | {fmt(c.max_diff_divergent)}"


def teacher_forced(engine: Any, requests: Requests, ref: RouteResult, true_id: int, false_id: int) -> dict[str, float]:
    """Score ``ref``'s own closed chains (a generate route's) with thinkrank's engine, so the
    chains are the same by construction and only the scoring arithmetic differs. Returns the
    largest score difference from ``ref``'s scores for each path of :func:`teacher_forced_scores`."""
    return {path: max(abs(x - y) for x, y in zip(scores, ref.scores))
            for path, scores in teacher_forced_scores(engine, requests, ref, true_id, false_id).items()}


def teacher_forced_scores(
    engine: Any, requests: Requests, ref: RouteResult, true_id: int, false_id: int,
) -> dict[str, list[float]]:
    """Scores of ``ref``'s closed chains (per prompt) through thinkrank's two scoring paths:
    ``close_from_cache`` (the prompt prefilled with its query's shared prefix, the closed chain
    fed from the prompt's cache, as Rank1 closes a cut chain) and ``next_token_logprobs`` (one
    pass over prompt + closed chain)."""
    from thinkrank.engines import GenerationRequest

    assert ref.closed is not None, "teacher forcing needs a generate route's closed texts"
    prompts = prompts_of(requests)
    queries = [q for q, ps in requests for _ in ps]
    ids = (true_id, false_id)
    # max_tokens=0: the chain ends at once, so its answer is read at prompt + close(...) from
    # the prompt's own cache; close returns the reference's closed chain.
    reqs = [GenerationRequest(prompt=p, max_tokens=0, answer_token_ids=ids, shared_prefix=q, close=_Tail(c[len(p):]))
            for p, q, c in zip(prompts, queries, ref.closed)]
    return {"close_from_cache": [_sigmoid_diff(g.answer_logprobs, ids) for g in engine.generate(reqs)],
            "next_token_logprobs": [_sigmoid_diff(lp, ids) for lp in engine.next_token_logprobs(ref.closed, list(ids))]}


@dataclass(frozen=True)
class _Tail:
    """A ``close`` rule that ignores the generation (empty here) and returns fixed text."""

    text: str

    def __call__(self, _generation: Generation) -> str:
        return self.text


def _sigmoid_diff(logprobs: dict[int, float] | None, ids: tuple[int, int]) -> float:
    assert logprobs is not None
    return 1.0 / (1.0 + math.exp(logprobs[ids[1]] - logprobs[ids[0]]))
