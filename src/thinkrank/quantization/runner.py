"""Weight-only quantization of a Rank1 model with llm-compressor's AWQ (the ``quantize`` extra).

    >>> from thinkrank.quantization import QuantizeConfig, quantize
    >>> result = quantize(QuantizeConfig(model="runs/rank1-7b/model", output="rank1-7b-awq",
    ...                                  dataset="../shared/data/scifact"))
    >>> Rank1(str(result.output))      # transformers engine (decompressed), or vLLM (int4 kernels)

The paper's AWQ checkpoints were made with AutoAWQ, which is no longer maintained; its successor
for this job is llm-compressor, whose output (compressed-tensors ``pack-quantized`` W4A16: int4
weights packed eight to an int32, one scale per group of input channels) vLLM serves natively and
transformers loads with ``compressed-tensors`` installed.

A run writes into ``OUTPUT.partial`` and renames it to ``OUTPUT`` when it is complete, with
``thinkrank-quantize.json`` (settings and figures) and the calibration texts it used. Running the
same settings again finds the finished folder and does nothing; a run that was killed leaves
only ``OUTPUT.partial``, which the next run removes before starting over (AWQ itself cannot
resume mid-way).
"""

from __future__ import annotations

import functools
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from thinkrank.declare import Field, option
from thinkrank.declare import fields as declared_fields
from thinkrank.errors import InvalidInputError, ModelLoadError, require

METHODS = ("awq",)
SCHEMES = {4: "W4A16", 8: "W8A16"}
MARKER = "thinkrank-quantize.json"
CALIBRATION_FILE = "calibration.jsonl"
GROUP_SIZES = (128, 64, 32, 16)  # tried in this order when suggesting a group size that fits

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class QuantizeConfig:
    """What to quantize and how.

    Attributes:
        model: local model directory or hub id (a merged model, e.g. ``thinkrank train``'s ``model/``).
        output: folder for the quantized model.
        method: ``"awq"`` (activation-aware weight quantization; the paper's choice).
        bits: 4 (W4A16, the paper's) or 8 (W8A16); activations stay in 16 bits.
        group_size: input channels per scale; every quantized layer's input size must be a multiple.
            None: 128 when that fits every layer, else the largest of 64, 32, 16 that does.
        num_samples / max_seq_length: calibration texts and the tokens kept of each.
        dataset: a collection folder: Rank1 prompts from its queries and BM25 passages.
        traces: prompt/completion JSONL (``thinkrank distill filter``): prompts with their chains.
        calibration: a JSONL of ``{"text"}`` or ``{"prompt", "completion"}`` lines, used as it is.
        prompt: a Table 10 dataset template for the prompts built from ``dataset``.
        ignore: layers left in full precision (the output head by default, as the paper's models).
        n_grid: AWQ's grid-search points per layer (fewer is faster, slightly worse scales).
        dtype: precision to load and calibrate in (``auto``: the checkpoint's).
        overwrite: replace an existing ``output`` made with other settings.
    """

    # Each setting is declared once, here: ``thinkrank quantize`` builds its flags from these
    # declarations (:func:`thinkrank.cli.options.parameter`), and check_config reads their ranges.
    model: str = option(help="Model folder or hub id (a merged model).", flags=("--model", "-m"))
    output: Path = option(help="Folder for the quantized model.", flags=("--output", "-o"))
    method: str = option("awq", f"Quantization method: {', '.join(METHODS)}.")
    bits: int = option(4, f"Weight bits: {' or '.join(f'{b} ({s})' for b, s in SCHEMES.items())}.")
    group_size: int | None = option(None, "Input channels per scale; must divide every layer's input size.  "
                                    f"[default: {GROUP_SIZES[0]}, or the largest of "
                                    f"{', '.join(map(str, GROUP_SIZES[1:]))} that fits]", minimum=1)
    num_samples: int = option(64, "Calibration texts.", minimum=1)
    max_seq_length: int = option(512, "Tokens kept of each calibration text.", minimum=1)
    dataset: Path | None = option(None, "Collection folder: calibrate on Rank1 prompts of its queries and BM25 "
                                  "passages (recommended).", flags=("--dataset", "-d"))
    traces: Path | None = option(None, "prompt/completion JSONL: calibrate on prompts with chains.")
    calibration: Path | None = option(None, "JSONL of {\"text\"} or {\"prompt\",\"completion\"} lines, used as it is.")
    prompt: str | None = option(None, "Dataset template for --dataset prompts (scifact, …).")
    ignore: tuple[str, ...] = option(("lm_head",), "Comma-separated layers kept in full precision.", cli_type=str)
    n_grid: int = option(20, "AWQ grid-search points per layer (fewer: faster).", minimum=1)
    dtype: str = option("auto", "auto (the checkpoint's), bfloat16, float16 or float32.")
    seed: int = option(0, "Seed for choosing calibration texts.")
    overwrite: bool = option(False, "Replace an output made with other settings.", flags=("--overwrite",))

    def __post_init__(self) -> None:
        object.__setattr__(self, "output", Path(self.output))

    def settings(self) -> dict[str, Any]:
        """The settings that decide the result (a finished folder with the same ones is reused)."""
        skip = {"output", "overwrite"}
        return {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v)
                for k, v in asdict(self).items() if k not in skip}


@functools.cache
def quantize_options() -> dict[str, Field]:
    """The options :class:`QuantizeConfig` declares (its fields' :mod:`thinkrank.declare` metadata)."""
    return declared_fields(QuantizeConfig)


@dataclass(frozen=True)
class QuantizeResult:
    """A finished quantization: where it is and what it cost.

    ``reused``: the output was already complete with the same settings, nothing was computed.
    ``cpu_shim``: llm-compressor's memory pinning was skipped (no accelerator, see ``cpu_shim``).
    """

    output: Path
    scheme: str
    group_size: int
    layers: int
    samples: int
    calibration: str
    seconds: float
    size_before: int | None
    size_after: int
    cpu_shim: bool = False
    reused: bool = False
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["output"] = str(self.output)
        return out


# ---- checks before any expensive work -------------------------------------------------------
def check_config(config: QuantizeConfig) -> None:
    """Reject bad settings before a model loads.

    Raises:
        InvalidInputError: unsupported method or bits, bad sizes, two calibration sources, a
            missing calibration file or folder, an existing output made otherwise.
    """
    if config.method.lower() not in METHODS:
        raise InvalidInputError(f"--method {config.method!r} is not supported; use one of: {', '.join(METHODS)}")
    if config.bits not in SCHEMES:
        raise InvalidInputError(f"--bits {config.bits} is not supported; use 4 (W4A16) or 8 (W8A16)")
    for name, f in quantize_options().items():
        value, low = getattr(config, name), f.declared.minimum
        if low is not None and value is not None and value < low:
            raise InvalidInputError(f"--{name.replace('_', '-')} must be {f.declared.rule}, got {value}")
    sources = [n for n, v in (("--dataset", config.dataset), ("--calibration", config.calibration)) if v is not None]
    if len(sources) > 1:
        raise InvalidInputError("give at most one of --dataset and --calibration (--traces may go with --dataset)")
    if config.traces is not None and config.calibration is not None:
        raise InvalidInputError("--traces adds chains to prompts from --dataset; it does not go with --calibration")
    for name, path, want_dir in (("--dataset", config.dataset, True), ("--traces", config.traces, False),
                                 ("--calibration", config.calibration, False)):
        if path is not None and not (Path(path).is_dir() if want_dir else Path(path).is_file()):
            raise InvalidInputError(f"{name} {path}: no such {'folder' if want_dir else 'file'}")
    if config.dtype not in ("auto", "bfloat16", "float16", "float32"):
        raise InvalidInputError(f"--dtype {config.dtype!r}: use auto, bfloat16, float16 or float32")
    out = config.output
    if out.exists() and not config.overwrite:
        marker = out / MARKER
        if not marker.is_file():
            raise InvalidInputError(f"--output {out} exists and was not written by thinkrank quantize; "
                                    "choose another folder or pass --overwrite")
        if json.loads(marker.read_text())["settings"] != config.settings():
            raise InvalidInputError(f"--output {out} holds a model quantized with other settings; "
                                    "choose another folder or pass --overwrite")


def model_config(model: str) -> dict[str, Any]:
    """The model's ``config.json`` (local folder or hub id), before loading any weights.

    Raises:
        ModelLoadError: no such model, or not a transformers model folder.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"--model {model}: no config.json; quantize a transformers model folder "
                                 "(a .gguf file or an unmerged adapter cannot be quantized; merge it first)")
        return json.loads((path / "config.json").read_text())
    if str(model).endswith(".gguf") or str(model).startswith((".", "/", "~")):
        raise ModelLoadError(f"--model {model}: not a transformers model folder")
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(model).to_dict()
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"could not load the config of {model!r} ({exc}); pass a local model folder") from exc


def check_architecture(config: dict[str, Any]) -> str:
    """The model class, if AWQ knows which layers feed which (its smoothing mappings).

    Raises:
        InvalidInputError: an architecture llm-compressor's AWQ has no mappings for.
    """
    from llmcompressor.modifiers.transform.awq import AWQ_DYNAMIC_MAPPING_REGISTRY, AWQ_MAPPING_REGISTRY

    known = set(AWQ_MAPPING_REGISTRY) | set(AWQ_DYNAMIC_MAPPING_REGISTRY)
    arch = (config.get("architectures") or ["?"])[0]
    # llm-compressor would fall back to Llama-style layer names and smooth nothing it cannot find.
    if arch not in known:
        names = ", ".join(sorted(a for a in known if a.endswith("ForCausalLM")))
        raise InvalidInputError(f"AWQ does not support architecture {arch!r} (llm-compressor has no layer "
                                f"mappings for it); supported causal LMs: {names}")
    return arch


def check_group_size(model: Any, group_size: int | None, ignore: tuple[str, ...]) -> tuple[int, int]:
    """The number of linear layers to quantize and the group size to use: ``group_size`` if every
    such layer's input size divides by it; with None, the largest of 128, 64, 32, 16 that fits all.

    Raises:
        InvalidInputError: naming the layers that do not divide and a group size that fits all.
    """
    import torch

    layers = {n: m.in_features for n, m in model.named_modules()
              if isinstance(m, torch.nn.Linear) and not _ignored(n, ignore)}
    fits = next((g for g in GROUP_SIZES if all(f % g == 0 for f in layers.values())), None)
    if group_size is None and fits is not None:
        return len(layers), fits
    wanted = group_size or GROUP_SIZES[-1]
    bad = {n: f for n, f in layers.items() if f % wanted}
    if bad:
        names = ", ".join(f"{n} ({f})" for n, f in list(bad.items())[:4]) + (" …" if len(bad) > 4 else "")
        hint = f"use --group-size {fits}" if fits else "leave those layers out with --ignore"
        raise InvalidInputError(f"--group-size {wanted} does not divide the input size of {len(bad)} "
                                f"layers: {names}; {hint}")
    return len(layers), wanted


def _ignored(name: str, ignore: tuple[str, ...]) -> bool:
    return any(name == i or name.endswith("." + i) for i in ignore)


# ---- calibration -----------------------------------------------------------------------------
def calibration_texts(config: QuantizeConfig) -> tuple[list[str], str]:
    """The calibration texts and a one-line account of where they came from."""
    from thinkrank.quantization import calibration as cal

    n, seed = config.num_samples, config.seed
    if config.calibration is not None:
        return cal.read_calibration(config.calibration, n, seed=seed), f"file {config.calibration}"
    if config.dataset is not None:
        prompts = cal.from_collection(config.dataset, n, seed=seed, template=config.prompt)
        if config.traces is None:
            return prompts, f"{len(prompts)} Rank1 prompts from {config.dataset} (BM25 passages)"
        texts = cal.mix(prompts, cal.from_traces(config.traces, n, seed=seed), n)
        return texts, f"Rank1 prompts from {config.dataset} and chains from {config.traces}"
    if config.traces is not None:
        return cal.from_traces(config.traces, n, seed=seed), f"prompts with chains from {config.traces}"
    return cal.builtin(n, seed=seed, template=config.prompt), "thinkrank's built-in Rank1 prompts (pass --dataset)"


# ---- the run ---------------------------------------------------------------------------------
def quantize(config: QuantizeConfig, progress: Progress | None = None) -> QuantizeResult:
    """Quantize ``config.model`` into ``config.output`` (see the module docstring).

    ``progress(done, total)`` is called as decoder layers are calibrated.

    Raises:
        MissingExtraError: llm-compressor is not installed (``thinkrank[quantize]``).
        InvalidInputError / ModelLoadError: bad settings, model or calibration set, all before
            the grid search starts.
    """
    check_config(config)
    out = config.output
    if (out / MARKER).is_file() and not config.overwrite:
        return _reuse(out)
    require("llmcompressor", "quantize")
    arch = check_architecture(model_config(config.model))
    texts, source = calibration_texts(config)
    if not texts:
        raise InvalidInputError(f"the calibration set ({source}) is empty")
    model, tokenizer = _load(config)
    layers, group_size = check_group_size(model, config.group_size, config.ignore)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)  # a killed run's leftovers: start over
    start = time.perf_counter()
    shim = _run_awq(model, tokenizer, texts, config, group_size, progress)
    partial.mkdir(parents=True)
    model.save_pretrained(partial, save_compressed=True)
    tokenizer.save_pretrained(partial)
    with (partial / CALIBRATION_FILE).open("w", encoding="utf-8") as handle:
        for text in texts:
            handle.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
    result = QuantizeResult(
        output=out, scheme=SCHEMES[config.bits], group_size=group_size, layers=layers, samples=len(texts),
        calibration=source, seconds=round(time.perf_counter() - start, 1), size_before=_weights_size(config.model),
        size_after=_folder_weights_size(partial), cpu_shim=shim, settings=config.settings(),
    )
    (partial / MARKER).write_text(json.dumps({**result.to_dict(), "architecture": arch}, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    partial.replace(out)
    return result


def _reuse(out: Path) -> QuantizeResult:
    saved = json.loads((out / MARKER).read_text())
    keep = {k: saved[k] for k in QuantizeResult.__dataclass_fields__ if k in saved and k not in ("output", "reused")}
    return QuantizeResult(output=out, reused=True, **keep)


def _load(config: QuantizeConfig) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = "auto" if config.dtype == "auto" else getattr(torch, config.dtype)
    try:
        model = AutoModelForCausalLM.from_pretrained(config.model, dtype=dtype)
        tokenizer = AutoTokenizer.from_pretrained(config.model)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"could not load --model {config.model!r}: {exc}") from exc
    return model.eval(), tokenizer


def _run_awq(model: Any, tokenizer: Any, texts: list[str], config: QuantizeConfig, group_size: int,
             progress: Progress | None) -> bool:
    """Calibrate and quantize ``model`` in place; True when the CPU shim was needed."""
    from datasets import Dataset
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import QuantizationModifier
    from llmcompressor.modifiers.transform.awq import AWQModifier

    from thinkrank.quantization.cpu_shim import cpu_pinning_disabled

    # Rank1 prompts are raw text: tokenize as inference does (special tokens at the front only).
    encoded = tokenizer(texts, truncation=True, max_length=config.max_seq_length)
    data = Dataset.from_dict({"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]})
    # AWQ searches per-channel scales against the quantizer that follows it in the recipe.
    scheme = _scheme(config.bits, group_size)
    recipe = [AWQModifier(n_grid=config.n_grid),
              QuantizationModifier(ignore=list(config.ignore), config_groups={"group_0": scheme})]
    hooks = _progress_hooks(model, progress)
    try:
        with cpu_pinning_disabled() as shim:
            oneshot(model=model, dataset=data, recipe=recipe, max_seq_length=config.max_seq_length,
                    num_calibration_samples=len(texts), shuffle_calibration_samples=False)
    finally:
        for hook in hooks:
            hook.remove()
    if progress is not None and hooks:
        progress(len(hooks), len(hooks))
    return shim


def _scheme(bits: int, group_size: int) -> dict[str, Any]:
    # W4A16 / W8A16 with our group size: symmetric int weights, one scale per group, 16-bit activations.
    return {"targets": ["Linear"],
            "weights": {"num_bits": bits, "type": "int", "symmetric": True, "strategy": "group",
                        "group_size": group_size}}


def _progress_hooks(model: Any, progress: Progress | None) -> list[Any]:
    """Report a decoder layer as done when the next one first runs (the sequential pipeline
    calibrates one layer at a time); the caller reports the total at the end."""
    if progress is None:
        return []
    layers = getattr(getattr(model, "model", None), "layers", None)
    if layers is None:
        return []
    total, seen = len(layers), set()

    def make(index: int) -> Callable[..., None]:
        def hook(*_: Any) -> None:
            if index not in seen:
                seen.add(index)
                progress(index, total)
        return hook

    hooks = [layer.register_forward_pre_hook(make(i)) for i, layer in enumerate(layers)]
    progress(0, total)
    return hooks


def _weights_size(model: str | Path) -> int | None:
    """Bytes of the weight files of a local model folder (None for a hub id)."""
    path = Path(model)
    return _folder_weights_size(path) if path.is_dir() else None


def _folder_weights_size(folder: Path) -> int:
    """Bytes of the weight files in ``folder``."""
    return sum(f.stat().st_size for f in folder.iterdir() if f.suffix in (".safetensors", ".bin"))
