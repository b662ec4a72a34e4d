"""float32 against bfloat16 on CPU: a scoring forward pass and a LoRA training step of SmolLM2-135M.

What a user on a CPU would otherwise run is the same model in float32 (transformers' CPU
default); the question is only whether ``--dtype bfloat16`` pays on this CPU. It pays where the
CPU has AMX or AVX512-BF16 (``lscpu``: ``amx_bf16``, ``avx512_bf16``); elsewhere torch emulates
bfloat16 and it is slower. Prints one JSON line per measurement.

    python benchmarks/bench_cpu_dtype.py [--model DIR] [--tokens 330] [--batch 8] [--reps 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def _flags() -> list[str]:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return []
    return sorted({f for f in text.split() if f in ("amx_bf16", "avx512_bf16", "avx512f")})


def main() -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model folder (default: the offline SmolLM2-135M-Instruct)")
    parser.add_argument("--tokens", type=int, default=330, help="sequence length (a Rank1 prompt with a 256-token passage)")
    parser.add_argument("--batch", type=int, default=8, help="sequences per scoring pass")
    parser.add_argument("--train-batch", type=int, default=4, help="sequences per training micro-batch")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    model_dir = args.model
    if model_dir is None:
        from thinkrank.testing.models import smollm2_dir

        model_dir = str(smollm2_dir())
    print(json.dumps({"cpu_flags": _flags(), "threads": torch.get_num_threads(), "torch": torch.__version__}))
    torch.manual_seed(0)
    for name in ("float32", "bfloat16"):
        dtype = getattr(torch, name)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).eval()
        ids = torch.randint(0, model.config.vocab_size, (args.batch, args.tokens))
        with torch.inference_mode():
            model(ids)  # warm-up
            start = time.perf_counter()
            for _ in range(args.reps):
                model(ids)
        score = (time.perf_counter() - start) / (args.reps * args.batch)
        lora = get_peft_model(model.train(), LoraConfig(r=16, lora_alpha=32, target_modules="all-linear",
                                                        task_type="CAUSAL_LM"))
        train_ids = ids[: args.train_batch]
        times = []
        for _ in range(args.reps + 1):  # the first step is a warm-up
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=name == "bfloat16"):
                loss = lora(input_ids=train_ids, labels=train_ids).loss
            loss.backward()
            lora.zero_grad()
            times.append(time.perf_counter() - start)
        train = sum(times[1:]) / (args.reps * len(train_ids))
        print(json.dumps({"dtype": name, "tokens": args.tokens, "score_s_per_sequence": round(score, 4),
                          "train_s_per_example": round(train, 4)}))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
