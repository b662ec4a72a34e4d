"""``thinkrank quantize``: AWQ int4 (or int8) weights through llm-compressor."""

from __future__ import annotations

import json
import os
from typing import Annotated, Any

import typer

from thinkrank.cli import options
from thinkrank.cli.common import ProgressBar, friendly_errors

QUANTIZE_HELP = """Quantize a Rank1 model's weights to int4 with AWQ (needs the quantize extra: llm-compressor).

The output is a compressed-tensors W4A16 checkpoint: vLLM serves it with int4 kernels (`vllm serve OUTPUT`, `--engine vllm`); the transformers engine loads it on CPU or GPU by decompressing the weights to 16/32-bit (smaller on disk, not in memory). Calibration is in-domain by default: --dataset builds Rank1 prompts from a collection's queries and BM25 passages, --traces adds reasoning chains (prompt/completion JSONL from `thinkrank distill filter`), --calibration takes your own JSONL; with none of them a small built-in set of Rank1 prompts is used. Every quantized layer's input size must divide by --group-size; by default 128, or the largest of 64, 32, 16 that fits the model (SmolLM2: 64). Run the same command again after an interruption: a finished output is reused, a partial one is started over. Examples:

  thinkrank quantize --model runs/rank1-7b/model --dataset ../shared/data/scifact/train --output rank1-7b-awq

  thinkrank quantize --model "$(python -m thinkrank.testing smollm2)" --output q/

  thinkrank rerank --model q/ --query "..." --docs docs.jsonl
"""


def register(app: typer.Typer) -> None:
    app.command("quantize", help=QUANTIZE_HELP)(quantize)


# QuantizeConfig's fields, in the order --help shows them (the config's own order is the one its
# settings are recorded in, in a finished output's marker file, so it stays as it is).
FLAGS = ("model", "output", "method", "bits", "group_size", "dataset", "traces", "calibration", "prompt", "num_samples",
         "max_seq_length", "n_grid", "ignore", "dtype", "seed", "overwrite")


@friendly_errors
def _quantize(**o: Any) -> None:
    if not o["verbose"]:
        # Read when tqdm and llm-compressor are first imported, which happens below.
        os.environ.setdefault("TQDM_DISABLE", "1")
        os.environ.setdefault("LLM_COMPRESSOR_LOG_LEVEL", "ERROR")
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    from thinkrank.quantization import QuantizeConfig, quantize as run

    settings = {name: o[name] for name in FLAGS}
    settings["ignore"] = tuple(i.strip() for i in o["ignore"].split(",") if i.strip())
    config = QuantizeConfig(**settings)
    with ProgressBar("calibrating layers", o["quiet"]) as bar:
        result = run(config, progress=bar)
    say = lambda m: typer.echo(m, err=True)  # noqa: E731
    if result.reused:
        say(f"{result.output} is already quantized with these settings; nothing to do")
    else:
        say(f"quantized {result.layers} linear layers to {result.scheme} (group {result.group_size}) on "
            f"{result.samples} calibration texts ({result.calibration}) in {result.seconds:.0f}s")
        if result.cpu_shim:
            say("no accelerator: ran AWQ on the CPU (llm-compressor's memory pinning skipped)")
    before = f"{result.size_before / 2**20:,.1f} MiB -> " if result.size_before else ""
    say(f"weights: {before}{result.size_after / 2**20:,.1f} MiB in {result.output}")
    typer.echo(json.dumps(result.to_dict()))


@options.command(_quantize, {"verbose": tuple(f"quantize:{name}" for name in FLAGS)})
def quantize(
    verbose: Annotated[bool, typer.Option("--verbose", help="Show llm-compressor's own logs and bars.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """The flags QuantizeConfig declares (FLAGS), then these two of the command's own."""
