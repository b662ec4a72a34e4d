"""One way to build a reranker: a frozen, validated :class:`RerankerSpec` and :func:`build_reranker`.

``thinkrank rerank``, ``thinkrank evaluate`` and ``thinkrank serve`` all describe the reranker
they want as a spec and build it here, so a flag means the same thing everywhere and every
setting is checked once, on construction, before a model loads. Engine options are checked
against what each engine declares in :data:`thinkrank.engines.ENGINE_OPTIONS`.

    >>> spec = RerankerSpec(model="./rank1-7b", engine="openai",
    ...                     engine_options={"base_url": "http://localhost:8000/v1"}, think_budget=512)
    >>> reranker = build_reranker(spec)
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, cast

from thinkrank.engines import ENGINE_OPTIONS, ENGINES, Engine, EngineOption, resolve_engine_name
from thinkrank.declare import Field, option
from thinkrank.declare import fields as declared_fields
from thinkrank.errors import InvalidInputError
from thinkrank.families import rank_r1, reasonrank
from thinkrank.families.base import Kind
from thinkrank.prompts import rank1, rankk
from thinkrank.rerankers.base import Reranker

MODES = ("pointwise", "listwise", "setwise")
MODE_OF_KIND: dict[Kind, str] = {"pair": "pointwise", "query": "listwise", "set": "setwise"}
"""The mode serving each family kind: Rank1, RankK and RankR1."""


@dataclass(frozen=True)
class RerankerSpec:
    """Everything needed to build a reranker, validated on construction.

    Args:
        mode: ``"pointwise"`` (Rank1), ``"listwise"`` (Rank-K) or ``"setwise"`` (Rank-R1); set by
            ``family`` when given.
        family: a reranker family by name (``thinkrank families``): ``rank1``, ``qwen3-reranker``,
            ``tfrank`` (pointwise), ``rank-k``, ``reasonrank`` (listwise) or ``rank-r1``
            (setwise); None: the mode's own (rank1, rank-k, rank-r1). It sets the mode, the
            default model and the family's defaults.
        model: hub id, local directory, ``.gguf`` file or adapter directory; None: the mode's
            released model (``jhu-clsp/rank1-7b``, ``hltcoe/Rank-K-32B``, ``ielabgroup/Rank-R1-7B-v0.1``).
        engine: ``"auto"`` or a registered engine name; ``engine_options`` its constructor
            options, each one the engine declares (a None value counts as not given).
        think_budget / reasoning: pointwise budget per chain, and reasoning on or off.
        prompt / instruction: a template (pointwise: dataset name or ``FILL_QUERY_HERE``;
            listwise: ``{query}``/``{docs}``) and text appended to every query.
        max_passage_tokens: passages are cut to this many tokens; None: the mode's default
            (pointwise 2048, listwise and setwise 512).
        temperature / seed: 0 is greedy; None: the family's (greedy except reasonrank-8B);
            sampling is reproducible with a seed.
        window / stride / depth / max_tokens: listwise windows and the token budget per window
            (setwise: per comparison).
        method / k / num_child / shuffle: setwise sort (heapsort or bubblesort), documents it
            brings to the top, children per node (sets of ``num_child + 1``), and whether each set
            is shown in an order drawn from ``seed`` (see :class:`~thinkrank.RankR1`).
        reasoning_close: pointwise with reasoning off, the bytes that close the empty think
            block (see :class:`~thinkrank.Rank1`). cascade: pointwise, reason only where it can
            change the top (``"top=20"``, ``"band=0.2:0.8"``; see :mod:`thinkrank.rerankers.cascade`).

    Options of the other mode are kept but not checked or used.

    Raises:
        InvalidInputError: an unknown mode or engine, an option the engine does not take, or a
            value of the wrong type or out of range (the message names the field).
    """

    mode: str = option("pointwise", "pointwise (Rank1), listwise (Rank-K) or setwise (Rank-R1); --family sets it.",
                       flags=("--mode",))
    family: str | None = option(None, "Reranker family (thinkrank families): rank1, qwen3-reranker, tfrank "
                                "(pointwise); rank-k, reasonrank (listwise); rank-r1 (setwise). Sets the mode and "
                                "the defaults.  [default: rank1; listwise: rank-k; setwise: rank-r1]",
                                flags=("--family",))
    model: str | None = option(None, "Hub id, local directory, .gguf file or adapter directory.  "
                               "[default: jhu-clsp/rank1-7b; listwise: hltcoe/Rank-K-32B; setwise: "
                               "ielabgroup/Rank-R1-7B-v0.1]", flags=("--model", "-m"))
    engine: str = option("auto", f"auto, {', '.join(ENGINES)}.")
    engine_options: Mapping[str, Any] = field(default_factory=dict)
    think_budget: int = option(rank1.THINK_BUDGET, "Pointwise: most reasoning tokens per document (other families: their released budget).", minimum=1,
                               modes=("pointwise",))
    reasoning: bool = option(rank1.REASONING, "Pointwise: off scores in one forward pass, no chain (other families: as released).", modes=("pointwise",))
    prompt: str | None = option(None, "Pointwise: dataset template name (scifact, nfcorpus, bright-pony, …) or a "
                                "template with FILL_QUERY_HERE. Listwise: a template with {query} and {docs}.",
                                modes=("pointwise", "listwise"))
    instruction: str | None = option(None, "Text appended to every query.")
    max_passage_tokens: int | None = option(None, "Cut passages to this many tokens (flagged).  "
                                            f"[default: {rank1.PASSAGE_TOKENS}; listwise {rankk.PASSAGE_TOKENS}; setwise "
                                            f"{rank_r1.PASSAGE_TOKENS}]", minimum=1)
    temperature: float | None = option(None, "0 = greedy.  [default: the family's: 0, reasonrank-8B 0.6]",
                                       minimum=0.0)
    seed: int | None = option(None, "Seed for sampling (with --temperature > 0); setwise: also of the sets' "
                              "shuffled order.  [default: setwise 0]")
    window: int = option(rankk.WINDOW, "Listwise: passages per window.", minimum=2, modes=("listwise",))
    stride: int = option(rankk.STRIDE, "Listwise: window stride.", minimum=1, modes=("listwise",))
    depth: int | None = option(rankk.DEPTH, "Listwise: how many top candidates to rerank.", minimum=1, modes=("listwise",),
                               cli_type=int)
    max_tokens: int | None = option(None, "Listwise: most tokens per window (reasoning + ordering); setwise: per "
                                    f"comparison.  [default: the family's: rank-k {rankk.MAX_TOKENS}, reasonrank "
                                    f"{reasonrank.SAMPLING['reasoning'].max_tokens}, rank-r1 {rank_r1.SAMPLING.max_tokens}]",
                                    minimum=1, modes=("listwise", "setwise"), cli_type=int | None)
    method: str = option(rank_r1.METHOD, "Setwise: the sort, heapsort or bubblesort (as released).", modes=("setwise",))
    k: int = option(rank_r1.TOP_K, "Setwise: documents the sort brings to the top; the others keep their given order.",
                    minimum=1, modes=("setwise",), flags=("--sort-k",))
    num_child: int = option(rank_r1.NUM_CHILD, "Setwise: children per heap node (bubblesort: window step); sets of "
                            "up to num_child + 1 documents.", minimum=1, maximum=rank_r1.MAX_SET - 1,
                            modes=("setwise",))
    shuffle: bool = option(True, "Setwise: show each set in an order drawn from --seed (off: the sort's order, "
                           "parent first).", modes=("setwise",))
    reasoning_close: str = option(rank1.REASONING_CLOSE, "Pointwise, reasoning off (and the cascade's first pass): bytes closing "
                                  "the empty think block: newline ('\\n</think>'), bare ('</think>') or empty-chain "
                                  "('\\n\\n</think>').", modes=("pointwise",))
    cascade: str | int | None = option(None, "Pointwise: score all without reasoning, reason only about the top M "
                                       "and/or a score band: 'top=20', 'band=0.2:0.8' or 'top=10,band=0.3:0.7'.",
                                       modes=("pointwise",), cli_type=str | None)
    engine_name: str = field(init=False, compare=False)
    """The engine that will run: ``engine`` with ``"auto"`` resolved for this machine."""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InvalidInputError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        object.__setattr__(self, "mode", mode_of(self.family, self.mode))
        if self.mode == "pointwise" and self.family not in (None, "rank1"):
            self._take_family_generation()
        if isinstance(self.model, os.PathLike):
            object.__setattr__(self, "model", os.fspath(self.model))
        if self.model is not None and (not isinstance(self.model, str) or not self.model.strip()):
            raise InvalidInputError(f"model must be a non-empty string (hub id or path) or None, got {self.model!r}")
        if not isinstance(self.engine, str) or (self.engine != "auto" and self.engine not in ENGINES):
            raise InvalidInputError(f"unknown engine {self.engine!r}; choose one of: auto, {', '.join(ENGINES)}")
        object.__setattr__(self, "engine_name", resolve_engine_name(self.engine))
        object.__setattr__(self, "engine_options", MappingProxyType(_check_engine_options(
            self.engine_name, dict(self.engine_options or {}))))
        self._check_reranker_options()

    def _take_family_generation(self) -> None:
        """A pointwise family other than rank1 reasons (or not) and generates as released: Rank1's
        defaults (reasoning on, think_budget 1024) give way to the family's."""
        from thinkrank.rerankers.pair_family import pair_family

        generation = pair_family(self.family or "").generation
        defaults = spec_options()
        if self.reasoning == defaults["reasoning"].default:
            object.__setattr__(self, "reasoning", generation.reasoning)
        if self.think_budget == defaults["think_budget"].default:
            object.__setattr__(self, "think_budget", generation.max_tokens)

    def _check_reranker_options(self) -> None:
        for name, declared in spec_options().items():
            if name in ("mode", "model", "engine") or not declared.applies(self.mode):
                continue
            value = getattr(self, name)
            if not declared.accepts(value):
                kinds = " or ".join("None" if t is type(None) else "int or float" if t is float else t.__name__
                                    for t in declared.types)
                raise InvalidInputError(f"{name} must be {kinds}, got {value!r}")
        if self.mode == "pointwise":
            from thinkrank.prompts.rank1 import resolve_reasoning_close
            from thinkrank.rerankers.pointwise import check_cascade, check_settings

            check_settings(self.think_budget, self.reasoning, self.max_passage_tokens, self.temperature or 0.0,
                           self.prompt, self.seed, self.instruction)
            resolve_reasoning_close(self.reasoning_close)
            check_cascade(self.cascade, self.reasoning)
        elif self.mode == "setwise":
            for name in ("max_tokens", "k", "num_child", "max_passage_tokens", "temperature"):
                spec_options()[name].check(getattr(self, name))
            rank_r1.SetwiseSort(0, method=cast(rank_r1.Method, self.method), k=self.k, num_child=self.num_child)
        else:
            from thinkrank.prompts.rankk import check_template
            from thinkrank.rerankers.listwise import check_settings as check_listwise

            check_listwise(self.window, self.stride, self.depth, 1 if self.max_tokens is None else self.max_tokens,
                           self.max_passage_tokens, self.temperature or 0.0)
            check_template(self.prompt)

    @property
    def model_name(self) -> str:
        """The model that will load: ``model``, or the mode's released default."""
        if self.model is not None:
            return self.model
        if self.family is not None:
            from thinkrank.families import get_family

            model = get_family(self.family).default_model
            if model is None:
                raise InvalidInputError(f"the {self.family} family has no released model: give one (--model)")
            return model
        if self.mode == "listwise":
            from thinkrank.rerankers.listwise import DEFAULT_MODEL as LISTWISE_MODEL

            return LISTWISE_MODEL
        if self.mode == "setwise":
            return rank_r1.DEFAULT_MODEL
        from thinkrank.engines.loading import DEFAULT_MODEL

        return DEFAULT_MODEL

    @property
    def sampling_temperature(self) -> float:
        """The temperature the reranker will use: ``temperature``, or its family's for this model
        (0, greedy, for every family but reasonrank-8B)."""
        if self.temperature is not None:
            return self.temperature
        if self.mode == "listwise":
            from thinkrank.families.window import window_family

            return window_family(self.family or "rank-k", self.model_name).sampling(self.model_name).temperature
        return 0.0

    @property
    def reranker_class(self) -> type[Reranker]:
        """The reranker family the spec builds: :class:`~thinkrank.Rank1`, :class:`~thinkrank.RankK`
        or :class:`~thinkrank.RankR1`."""
        if self.mode == "listwise":
            from thinkrank.rerankers.listwise import RankK

            return RankK
        if self.mode == "setwise":
            from thinkrank.rerankers.setwise import RankR1

            return RankR1
        from thinkrank.rerankers.pointwise import Rank1

        return Rank1

    @property
    def kind(self) -> Kind:
        """What one model call of the reranker judges (its family's ``kind``)."""
        return self.reranker_class.kind

    @property
    def judges(self) -> Kind:
        """What one result of the reranker stands on (``Reranker.judges``), known before it is built."""
        return self.reranker_class.judges_for(cascade=self.cascade)

    def replace(self, **changes: Any) -> RerankerSpec:
        """A copy with ``changes`` applied, validated again."""
        return dataclasses.replace(self, **changes)


def mode_of(family: str | None, mode: str = "pointwise") -> str:
    """The mode that serves ``family`` (``mode`` itself when no family is named).

    Raises:
        InvalidInputError: an unknown or unavailable family, or a family of another mode than
            the (non-default) ``mode`` asked for.
    """
    if family is None:
        return mode
    from thinkrank.families import get_family

    entry = get_family(family)
    served = MODE_OF_KIND[entry.kind]
    if mode != "pointwise" and mode != served:  # pointwise is the default: any family may replace it
        raise InvalidInputError(f"the {family} family is {served}, but the mode asked for is {mode}: drop --mode")
    return served


@functools.cache
def spec_options() -> dict[str, Field]:
    """The options :class:`RerankerSpec` declares (its fields' :mod:`thinkrank.declare` metadata)."""
    return declared_fields(RerankerSpec)


def _check_engine_options(engine: str, options: dict[str, Any]) -> dict[str, Any]:
    declared = {o.name: o for o in ENGINE_OPTIONS.get(engine, ())}
    checked: dict[str, Any] = {}
    for name, value in options.items():
        if value is None:
            continue
        if name not in declared:
            raise InvalidInputError(_not_an_option(name, engine, declared))
        checked[name] = _check_option(declared[name], value)
    return checked


def _not_an_option(name: str, engine: str, declared: Mapping[str, EngineOption]) -> str:
    owners = [e for e, options in ENGINE_OPTIONS.items() if any(o.name == name for o in options)]
    takes = ", ".join(declared) or "no options"
    if owners:
        flag = "--" + name.replace("_", "-")
        return (f"engine option {name}: {flag} is an option of the {' and '.join(owners)} engine, but the engine is "
                f"{engine} (which takes: {takes})")
    return f"unknown engine option {name!r}; the {engine} engine takes: {takes}"


def _check_option(option: EngineOption, value: Any) -> Any:
    if option.kind is str and isinstance(value, os.PathLike):
        value = os.fspath(value)
    kinds: tuple[type, ...] = (int, float) if option.kind is float else (option.kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and option.kind is not bool):
        raise InvalidInputError(f"engine option {option.name} ({option.flag}) must be {option.kind.__name__}, "
                                f"got {value!r}")
    if not option.valid(value):
        raise InvalidInputError(f"engine option {option.name} ({option.flag}) must be {option.rule}, got {value!r}")
    return value


def build_reranker(spec: RerankerSpec, *, engine: Engine | None = None,
                   progress: Callable[[int, int], None] | None = None) -> Reranker:
    """The reranker ``spec`` describes: a :class:`~thinkrank.Rank1`, :class:`~thinkrank.RankK` or
    :class:`~thinkrank.RankR1`.

    ``engine``: an engine already loaded for ``spec.model`` to use instead of loading one
    (``spec.engine`` and ``spec.engine_options`` are then not used); several rerankers with
    different settings can share one engine this way. ``progress(done, total)`` is the
    reranker's progress callback (not taken by RankR1).

    Raises:
        MissingExtraError / ModelLoadError: the engine's extra is missing or the model does not load.
    """
    common: dict[str, Any] = dict(instruction=spec.instruction)
    given = dict(temperature=spec.temperature, max_passage_tokens=spec.max_passage_tokens)
    common.update({name: value for name, value in given.items() if value is not None})
    if engine is not None:
        common["engine"] = engine
    else:
        common.update(engine=spec.engine, **spec.engine_options)
    if spec.mode == "setwise":
        from thinkrank.rerankers.setwise import RankR1

        # RankR1 seeds its shuffle even when greedy (seed 0 unless given); its budget is max_tokens.
        given = dict(seed=spec.seed, max_tokens=spec.max_tokens)
        common.update({name: value for name, value in given.items() if value is not None})
        return RankR1(spec.model_name, method=cast(rank_r1.Method, spec.method), k=spec.k, num_child=spec.num_child,
                      shuffle=spec.shuffle, **common)
    common.update(prompt=spec.prompt, seed=spec.seed, progress=progress)
    if spec.family is not None:
        common["family"] = spec.family
    if spec.mode == "listwise":
        from thinkrank.rerankers.listwise import RankK

        return RankK(spec.model_name, window=spec.window, stride=spec.stride, depth=spec.depth,
                     max_tokens=spec.max_tokens, **common)
    from thinkrank.rerankers.pointwise import Rank1

    return Rank1(spec.model_name, think_budget=spec.think_budget, reasoning=spec.reasoning,
                 reasoning_close=spec.reasoning_close, cascade=spec.cascade, **common)


def spec_from_options(model: str | os.PathLike[str] | None = None, **options: Any) -> RerankerSpec:
    """The spec flat keyword options describe, as a library user writes them
    (``reasoning=False``, ``think_budget=256``, ``engine="openai"``, ``base_url=...``): the spec's
    fields by name, and every option some engine declares goes to ``engine_options``.

    Raises:
        InvalidInputError: an option that is neither a spec field nor an engine option (the
            message lists both), or any error the spec itself raises.
    """
    from thinkrank.engines import engine_option_names

    fields = {f.name for f in dataclasses.fields(RerankerSpec) if f.init} - {"model", "engine_options"}
    engine_names = set(engine_option_names())
    unknown = sorted(set(options) - fields - engine_names)
    if unknown:
        raise InvalidInputError(
            f"unknown reranker option(s) {', '.join(unknown)}; reranker options: {', '.join(sorted(fields))}; "
            f"engine options: {', '.join(sorted(engine_names))}"
        )
    return RerankerSpec(model=None if model is None else os.fspath(model), engine_options={k: v for k, v in options.items() if k in engine_names},
                        **{k: v for k, v in options.items() if k in fields})
