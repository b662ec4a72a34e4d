"""The model card written with the recipe's model: data, recipe, metrics and limits."""

from __future__ import annotations

from typing import Any

from thinkrank.recipes.config import RecipeConfig


def model_card(config: RecipeConfig, selection: dict[str, Any], results: dict[str, Any], arm: str) -> str:
    chosen = selection["arms"][arm]
    lr = f"{chosen['chosen_lr']:g}"
    cand = chosen["candidates"][lr]
    split = selection["split"]
    # A bfloat16 run's figures are bfloat16 scores; loading in float32 changes them by rounding only.
    dtype, dtype_flag = ("", "") if config.dtype == "auto" else (f", dtype=\"{config.dtype}\"", f" --dtype {config.dtype}")
    lines = [
        "---", "library_name: transformers", "tags: [reranker, rank1, thinkrank, scifact]", "---", "",
        f"# Rank1-style reranker from {config.model} (SciFact recipe, `{arm}` arm)", "",
        ("Made by `thinkrank recipe scifact` (docs/training.md). It was trained and measured with reasoning off "
         f"and passages cut to {config.passage_tokens} tokens; load it the same way: "
         f"`Rank1(model=\"<this folder>\", reasoning=False, max_passage_tokens={config.passage_tokens}{dtype})`, "
         f"`thinkrank evaluate --model <this folder> --reasoning off --max-passage-tokens {config.passage_tokens}{dtype_flag}` "
         f"or `thinkrank serve --model <this folder> --reasoning off --max-passage-tokens {config.passage_tokens}{dtype_flag}`."),
        "",
        "## Data",
        (f"- SciFact training claims (BEIR `scifact/train`): {len(split['train'])} for training, {len(split['dev'])} "
        f"held out by query as the dev split; {len(split['dropped_same_text_as_test'])} dropped because their text "
        "is a test claim's. No test claim or test judgment was used before the evaluation."),
        (f"- Pairs: {config.pairs} drawn with the mix {config.shares} (positives from the qrels, hard negatives from "
        "BM25 over the same corpus)."),
        f"- Passages cut to {config.passage_tokens} tokens in training and in scoring.",
        f"- Precision: {config.dtype} (`auto`: float32 on CPU, bfloat16 on a GPU) in generation, training and scoring.", "",
        "## Recipe",
        f"- Arm `{arm}`: " + ("the label as the answer after a closed chain (reasoning off)." if arm == "direct" else
                              "the base model's own chains, kept when their answer agrees with the label."),
        ((f"- LoRA rank {config.lora_rank}, alpha {config.lora_alpha}, all linear layers" if config.finetune == "lora"
          else "- Full fine-tuning of every weight (float32 master weights)") + f"; learning rate {lr} chosen on "
        f"dev nDCG@10 among {list(config.learning_rates)}; effective batch {config.batch_size}, "
        f"{config.epochs:g} epoch(s){'' if config.max_steps is None else f', at most {config.max_steps} steps'}; "
        f"{cand['steps']} steps on {cand['examples']} examples in {cand['seconds']:.0f} s."),
        f"- Dev nDCG@10 (BM25 top {selection['dev_depth']} reranked): {cand['dev']['nDCG@10']:.4f}.", "",
        "## Metrics (SciFact test)", "", results_table(results), "",
        "## Limits",
        "- A 135M-parameter model trained for minutes on CPU: a demonstration of the pipeline, not a strong reranker.",
        "- Scored with reasoning off (the answer right after a closed chain), also for the chains arm.",
        "- One collection (scientific claims); no claim about other domains.",
        f"- Evaluated on {results['queries']} test claims" + (" (a subset)." if config.test_queries else "."), "",
    ]
    return "\n".join(lines)


def results_table(results: dict[str, Any]) -> str:
    from thinkrank.recipes.results import results_markdown

    return results_markdown(results)
