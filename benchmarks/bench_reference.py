"""thinkrank on vLLM side by side with the released Rank1 code, on one vLLM instance.

Routes, on the same ``vllm.LLM``, model, DL19 pairs and think budget, greedy:

* ``generate``: plain ``LLM.generate`` with the budget and a ``</think>`` stop, nothing else:
  the chains alone, the limit any reranker on this vLLM is measured against;
* ``thinkrank-vllm``: ``Rank1(engine=VLLMEngine(llm))``;
* ``released``: the released ``rank1.py`` (github.com/orionw/rank1), loaded from the path given
  with ``--rank1-py`` (fetch the repository; its code is not part of thinkrank) and run as
  released: ``rank1(...).predict(pairs)``. Unavoidable stubs, all listed: its imports of ``mteb``
  (not needed to call ``predict``) are empty modules and ``RerankerWrapper`` (its base class,
  mteb's) is a class whose ``__init__`` does nothing; ``LLM`` in its module returns the shared
  instance (so one model load serves every route: its own arguments would load the same model
  with ``max_model_len=context_size``, ``dtype=fp_options``); ``model.generate`` is wrapped to
  count generated tokens (it calls through unchanged);
* ``thinkrank-transformers``: ``Rank1(engine=TransformersEngine(model))`` (float32, CPU);
* ``cascade``: ``thinkrank-vllm`` with ``cascade="top=6"`` (reasons about 6 of each query's
  candidates; judged against the full run's time; ``--cascade`` sets another);
* ``stage1``: ``thinkrank-vllm`` with ``reasoning=False`` over every pair: the cascade's first
  stage alone, which every cascade pays;
* ``generate-chosen``: plain ``LLM.generate`` (as ``generate``) of only the pairs the cascade
  chose to reason about (needs ``cascade`` before it in the first repetition), their prompts
  cached first (untimed), as stage 1 leaves them in a cascade: with ``stage1``, the floor under
  any cascade's time on this vLLM.

Routes are interleaved and repeated (order rotated); the table gives the median wall time. Each
route starts with vLLM's prefix cache emptied (``--cache cold``, the default: new pairs, as a
user's next query) or holding the prompts alone (``--cache prompts``), so none reuses the chains,
answer prompts or forced prompts an earlier route or repetition left there.
Agreement with the released code is counted on the pairs where both follow the same rule: the
released code did not fall back to 0.5, and its chain did not end with end-of-sequence (it then
reads the answer at that position without closing ``</think>``; thinkrank forces the close).

    python benchmarks/bench_reference.py --rank1-py /path/to/rank1/rank1.py --pairs 24 --budget 48 --reps 3

The profile (``--profile``) times thinkrank's vLLM calls: generate calls per ``rerank_many``,
seconds, prompt tokens and prefix-cache hits (vLLM's metrics) of each (generation pass, answer
pass), the rest (Python per request), and splits what the answer pass prefills into the prompts'
last KV blocks (which vLLM never caches) and the chain tokens the released rule changes, timing the
last blocks alone.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import platform
import statistics
import sys
import time
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from routes import dl19_requests  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "dl19"


@dataclass
class Result:
    route: str
    seconds: list[float] = field(default_factory=list)
    tokens: int = 0
    scores: list[float] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)


def load_released(path: Path, llm: Any) -> Any:
    """The released ``rank1`` class from ``path``, with the stubs listed in the module docstring."""
    for name in ("mteb", "mteb.encoder_interface", "mteb.evaluation", "mteb.evaluation.evaluators",
                 "mteb.evaluation.evaluators.RetrievalEvaluator", "mteb.model_meta", "mteb.models",
                 "mteb.models.rerankers_custom"):
        sys.modules.setdefault(name, types.ModuleType(name))
    mods = sys.modules
    mods["mteb"].MTEB = None
    mods["mteb.encoder_interface"].Encoder = object
    mods["mteb.evaluation.evaluators.RetrievalEvaluator"].DenseRetrievalExactSearch = object
    mods["mteb.model_meta"].ModelMeta = object

    class RerankerWrapper:  # mteb's base class: nothing of it is used by predict()
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

    mods["mteb.models.rerankers_custom"].RerankerWrapper = RerankerWrapper
    spec = importlib.util.spec_from_file_location("released_rank1", path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    module.LLM = lambda **kwargs: llm
    return module.rank1


class Counting:
    """``LLM.generate`` passed through, counting generated tokens and calls and timing them."""

    def __init__(self, llm: Any) -> None:
        self.llm, self.tokens, self.calls, self.seconds = llm, 0, [], 0.0

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        outs = self.llm.generate(*args, **kwargs)
        self.seconds += time.perf_counter() - start
        self.calls.append(len(outs))
        self.tokens += sum(len(o.outputs[0].token_ids) for o in outs)
        return outs

    def __getattr__(self, name: str) -> Any:
        return getattr(self.llm, name)


def start_cache(llm: Any, mode: str, prompts: list[str]) -> None:
    """Empty vLLM's prefix cache before a route, so no route reuses what an earlier one (or its
    own earlier repetition) left there: its chains, answer prompts or forced prompts. With
    ``prompts`` the prompts alone are then cached again (untimed)."""
    if not llm.reset_prefix_cache():
        raise RuntimeError("vLLM did not reset its prefix cache (a request still running?)")
    if mode == "prompts":
        cache_prompts(llm, prompts)


def cache_prompts(llm: Any, prompts: list[Any]) -> None:
    """One new token after each prompt: the prompts' whole KV blocks are then in the prefix cache."""
    from vllm import SamplingParams

    llm.generate(prompts, SamplingParams(max_tokens=1, temperature=0), use_tqdm=False)


def prefix_cache(llm: Any) -> tuple[float, float]:
    """vLLM's cumulative prefix-cache (queries, hits) in tokens, from its metrics."""
    queries = hits = 0.0
    for m in llm.get_metrics():
        if m.name == "vllm:prefix_cache_queries":
            queries += m.value
        elif m.name == "vllm:prefix_cache_hits":
            hits += m.value
    return queries, hits


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rank1-py", type=Path, required=True, help="the released rank1.py (orionw/rank1)")
    ap.add_argument("--queries", type=int, default=1)
    ap.add_argument("--pairs", type=int, default=24, help="candidates per query")
    ap.add_argument("--budget", type=int, default=48)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--routes",
                    default="generate,thinkrank-vllm,released,thinkrank-transformers,cascade,stage1,generate-chosen")
    ap.add_argument("--cascade", default="top=6", help="the cascade route's setting")
    ap.add_argument("--block-size", type=int, default=None, help="vLLM KV block size (default: thinkrank's)")
    ap.add_argument("--cache", choices=("cold", "prompts"), default="cold",
                    help="what vLLM's prefix cache holds when a route starts: nothing (cold: new pairs, as a "
                         "user's next query), or the prompts alone (prompts: a query reranked again)")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()

    from vllm import LLM, SamplingParams

    from thinkrank import Rank1
    from thinkrank.engines.vllm import CPU_BLOCK_SIZE, VLLMEngine
    from thinkrank.prompts.rank1 import build_rank1_prompt
    from thinkrank.testing import smollm2_dir

    model = str(smollm2_dir())
    requests = dl19_requests(DATA, args.queries, args.pairs)
    prompts = [build_rank1_prompt(q, p) for q, ps in requests for p in ps]
    block = args.block_size or CPU_BLOCK_SIZE
    start = time.perf_counter()
    llm = LLM(model=model, dtype="float32", max_model_len=4096, enable_prefix_caching=True, block_size=block,
              disable_log_stats=not args.profile)
    print(f"# vLLM loaded in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    engine = VLLMEngine(llm)
    counted = Counting(llm)
    released_cls = load_released(args.rank1_py, counted)
    released = released_cls(model, context_size=4096, max_output_tokens=args.budget, fp_options="float32")
    transformers = None
    routes = args.routes.split(",")
    if "thinkrank-transformers" in routes:
        from thinkrank.engines.transformers import TransformersEngine

        transformers = TransformersEngine(model, device="cpu")
    results = {r: Result(r) for r in routes}
    chosen_by_cascade: list[int] = []
    plain = SamplingParams(temperature=0, max_tokens=args.budget, stop=["</think>"], skip_special_tokens=False)

    def run(route: str) -> None:
        res = results[route]
        t = time.perf_counter()
        if route in ("generate", "generate-chosen"):
            chosen = chosen_by_cascade if route == "generate-chosen" else range(len(prompts))
            outs = llm.generate([prompts[i] for i in chosen], plain, use_tqdm=False)
            res.seconds.append(time.perf_counter() - t)
            res.tokens = sum(len(o.outputs[0].token_ids) for o in outs)
            res.notes["chains"] = [list(o.outputs[0].token_ids) for o in outs]
            res.notes["eos"] = [o.outputs[0].finish_reason == "stop" and o.outputs[0].stop_reason is None for o in outs]
        elif route == "released":
            counted.tokens, counted.calls = 0, []
            log = io.StringIO()
            with contextlib.redirect_stdout(log):
                scores = released.predict([(q, p) for q, ps in requests for p in ps])
            res.seconds.append(time.perf_counter() - t)
            res.scores, res.tokens = list(scores), counted.tokens
            res.notes["fallbacks"] = log.getvalue().count("setting at 0.5 score")
            res.notes["second pass"] = counted.calls[1] if len(counted.calls) > 1 else 0
        else:
            eng = transformers if route == "thinkrank-transformers" else engine
            cascade = args.cascade if route == "cascade" else None
            rankings = Rank1(engine=eng, think_budget=args.budget, cascade=cascade,
                             reasoning=route != "stage1").rerank_many(requests)
            res.seconds.append(time.perf_counter() - t)
            js = [j for r in rankings for j in sorted(r, key=lambda j: j.index)]
            res.scores = [j.score for j in js]
            res.tokens = sum(j.reasoning_tokens for j in js)
            res.notes["forced"] = sum(j.forced for j in js)
            if route == "cascade":
                chosen_by_cascade[:] = [i for i, j in enumerate(js) if j.reasoned]
                res.notes["reasoned"] = len(chosen_by_cascade)

    Rank1(engine=engine, think_budget=4).rerank_many([(requests[0][0], requests[0][1][:2])])  # warm-up
    for rep in range(args.reps):
        order = routes[rep % len(routes):] + routes[: rep % len(routes)]
        if "generate-chosen" in order and "cascade" in order and not chosen_by_cascade:
            order.remove("generate-chosen")
            order.insert(order.index("cascade") + 1, "generate-chosen")
        for route in order:
            start_cache(llm, args.cache, prompts)
            if route == "generate-chosen":  # as in the cascade, where stage 1 has just cached these prompts
                cache_prompts(llm, [prompts[i] for i in chosen_by_cascade])
            run(route)
            res = results[route]
            print(f"# rep {rep} {route}: {res.seconds[-1]:.2f} s, {res.tokens} tokens, "
                  f"{ {k: v for k, v in res.notes.items() if k not in ('chains', 'eos')} }", file=sys.stderr, flush=True)
    report(results, args, block)
    if args.profile:
        profile(engine, requests, args.budget, block, args.cache, prompts)


def profile(engine: Any, requests: Any, budget: int, block: int, cache: str, prompts: list[str]) -> None:
    """Where thinkrank's time goes on vLLM: calls into ``LLM.generate`` (seconds, prompt tokens,
    prefix-cache hits), the rest, and what the answer pass prefills and why."""

    from thinkrank import Rank1

    calls: list[dict[str, Any]] = []
    run = engine._run

    def timed(prompts: list[Any], kwargs: list[dict[str, Any]]) -> list[Any]:
        q0, h0 = prefix_cache(engine.llm)
        t = time.perf_counter()
        out = run(prompts, kwargs)
        seconds = time.perf_counter() - t
        q1, h1 = prefix_cache(engine.llm)
        calls.append({"prompts": prompts, "seconds": seconds, "tokens": q1 - q0, "hits": h1 - h0})
        return out

    engine._run = timed
    start_cache(engine.llm, cache, prompts)
    t = time.perf_counter()
    Rank1(engine=engine, think_budget=budget).rerank_many(requests)
    total = time.perf_counter() - t
    engine._run = run
    inside = sum(c["seconds"] for c in calls)
    print("\n## profile (thinkrank-vllm, one rerank_many)\n")
    print(f"- total {total:.2f} s; LLM.generate calls: {len(calls)} ("
          + ", ".join(f"{len(c['prompts'])} requests {c['seconds']:.2f} s, {c['tokens']:.0f} prompt tokens of which "
                      f"{c['tokens'] - c['hits']:.0f} prefilled" for c in calls) + ")")
    print(f"- outside LLM.generate (prompts, tokenising, scoring ids, judgments): {total - inside:.2f} s")
    if len(calls) < 2:
        return
    # The answer pass prefills what the prefix cache cannot give back: the last KV block of every
    # prompt (vLLM caches whole blocks only; a prompt ending on a block boundary computes that
    # whole block again), and the chain tokens the released rule rewrites (the cut, and "\n" +
    # the stripped chain after <think>). Rerunning the same prompts, every whole block cached,
    # measures the first part; the rest of the answer pass's prefill is the second.
    answer = calls[-1]["prompts"]
    rerun: list[tuple[float, float]] = []  # (seconds, tokens prefilled)
    for _ in range(3):
        q0, h0 = prefix_cache(engine.llm)
        t = time.perf_counter()
        cache_prompts(engine.llm, answer)
        seconds = time.perf_counter() - t
        q1, h1 = prefix_cache(engine.llm)
        rerun.append((seconds, (q1 - q0) - (h1 - h0)))
    missed = calls[-1]["tokens"] - calls[-1]["hits"]
    last_blocks = rerun[-1][1]
    print(f"- answer pass: {missed:.0f} tokens prefilled: {last_blocks:.0f} are the prompts' last {block}-token "
          f"blocks, which vLLM never caches (measured by the rerun below), and {missed - last_blocks:.0f} are chain "
          "tokens the released rule changes (the cut, and the newline that replaces the chain's own leading whitespace)")
    print(f"- the same answer prompts again, every whole block now cached: {last_blocks:.0f} tokens prefilled, "
          f"{statistics.median(s for s, _ in rerun):.2f} s (runs {' '.join(f'{s:.2f}' for s, _ in rerun)}): "
          "the last blocks alone")


def report(results: dict[str, Result], args: Any, block: int) -> None:
    med = {r: statistics.median(res.seconds) for r, res in results.items() if res.seconds}
    base = med.get("generate")
    print(f"\n# {args.queries * args.pairs} DL19 pairs, budget {args.budget}, SmolLM2-135M float32, vLLM CPU "
          f"block_size {block}, prefix cache at each route's start: {args.cache}, {args.reps} reps, {platform.processor() or platform.machine()}\n")
    print("| route | seconds (median) | runs | × generate | generated tokens | notes |")
    print("|---|---|---|---|---|---|")
    for r, res in results.items():
        ratio = f"{med[r] / base:.2f}" if base else "-"
        notes = {k: v for k, v in res.notes.items() if k not in ("chains", "eos")}
        runs = " ".join(f"{s:.1f}" for s in res.seconds)
        print(f"| {r} | {med[r]:.2f} | {runs} | {ratio} | {res.tokens} | {json.dumps(notes)} |")
    if "cascade" in med and "thinkrank-vllm" in med:
        print(f"\ncascade {args.cascade} / full run: {med['cascade'] / med['thinkrank-vllm']:.2f}")
    if "stage1" in med and "thinkrank-vllm" in med:
        print(f"stage 1 alone (no reasoning, every pair) / full run: {med['stage1'] / med['thinkrank-vllm']:.2f}")
        if "generate-chosen" in med:
            floor = med["stage1"] + med["generate-chosen"]
            print(f"floor under any cascade (stage 1 + plain generation of the chosen chains) / full run: "
                  f"{floor / med['thinkrank-vllm']:.2f}")
    tr, rel, gen = results.get("thinkrank-vllm"), results.get("released"), results.get("generate")
    if tr and rel and rel.scores:
        eos = gen.notes.get("eos") if gen else [False] * len(rel.scores)
        same = [i for i, (s, e) in enumerate(zip(rel.scores, eos)) if s != 0.5 and not e]
        diff = max((abs(tr.scores[i] - rel.scores[i]) for i in same), default=float("nan"))
        agree = sum((tr.scores[i] >= 0.5) == (rel.scores[i] >= 0.5) for i in same)
        print(f"thinkrank-vllm vs released, on the {len(same)} pairs where both follow the same rule: "
              f"answers agree on {agree}, largest score difference {diff:.1e}")
    tt = results.get("thinkrank-transformers")
    if tr and tt and tt.scores:
        print(f"thinkrank-vllm vs thinkrank-transformers: largest score difference "
              f"{max(abs(a - b) for a, b in zip(tr.scores, tt.scores)):.1e}")


if __name__ == "__main__":
    main()
