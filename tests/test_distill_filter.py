"""Filtering teacher traces into training data (Rank1 §2.2) and exporting it: the stages and
their counts, the self-filter hook, class balancing, and the prompt/completion and
LLaMA-Factory files, checked against the Rank1 prompt built independently."""

from __future__ import annotations

import json

import pytest

from thinkrank.distill.export import completion_text, sft_examples, write_llamafactory, write_sft_jsonl
from thinkrank.distill.filtering import FilterConfig, balance_classes, filter_traces
from thinkrank.distill.records import read_records, write_jsonl
from thinkrank.errors import InvalidInputError
from thinkrank.prompts.rank1 import RANK1_PROMPT, build_rank1_prompt


def record(i: int, label: bool, reasoning: str, answer_text: str, finish: str = "stop", template: str | None = None,
           source: str | None = None) -> dict:
    query, passage = f"claim number {i}", f"Passage {i} text."
    return {"qid": f"q{i}", "docid": f"d{i}", "query": query, "passage": passage, "label": label,
            "source": source or ("positive" if label else "negative"), "rank": None,
            "prompt": build_rank1_prompt(query, passage, template=template), "template": template,
            "teacher": "t", "teacher_settings": "abc", "key": f"k{i}", "reasoning": reasoning,
            "answer_text": answer_text, "finish_reason": finish, "prompt_tokens": 3, "completion_tokens": 5, "extra": {}}


RECORDS = [
    record(0, True, "chain 0", "true"),                 # kept
    record(1, False, "chain 1", "**False**."),          # kept
    record(2, True, "chain 2", "maybe"),                # unparseable
    record(3, True, "chain 3", "true or false"),        # ambiguous -> unparseable
    record(4, True, "chain 4", "true", "length"),       # chain never closed
    record(5, False, "chain 5", "false", "forced"),     # forced (kept only with keep_forced)
    record(6, True, "   ", "true"),                     # no reasoning
    record(7, True, "chain 7", "false"),                # disagrees with its label
    record(8, False, "chain 8", "Answer: true"),        # disagrees with its label
    record(9, "1", "chain 9", r"\boxed{true}"),         # kept (label as text)
    record(10, 0, "chain 10", "false", source="hard:1-5"),  # kept
]


def _ids(records):
    return [r["qid"] for r in records]


def _check_counts_add_up(result, n_input):
    stages = result.stages
    assert stages[0].name == "input" and stages[0].kept == n_input and stages[0].dropped == 0
    for before, after in zip(stages, stages[1:]):
        assert after.kept == before.kept - after.dropped
        assert after.positives + after.negatives == after.kept
    assert stages[-1].kept == len(result.records)


def test_each_stage_drops_what_it_should_and_the_counts_add_up():
    result = filter_traces(RECORDS, FilterConfig())
    assert _ids(result.records) == ["q0", "q1", "q9", "q10"]
    assert [(s.name, s.kept, s.dropped) for s in result.stages] == [
        ("input", 11, 0), ("answer parsed", 8, 3), ("has reasoning", 7, 1), ("not forced", 6, 1),
        ("agrees with label", 4, 2)]
    _check_counts_add_up(result, len(RECORDS))
    assert [r["answer"] for r in result.records] == ["true", "false", "true", "false"]
    assert result.records[2]["label"] is True and result.records[3]["label"] is False
    final = result.stages[-1]
    assert (final.positives, final.negatives) == (2, 2)
    assert final.by_source == {"hard:1-5": 1, "negative": 1, "positive": 2}
    assert result.to_dict()["kept"] == 4


def test_agreement_with_the_label_and_forced_answers_are_optional():
    loose = filter_traces(RECORDS, FilterConfig(agree_with_label=False, keep_forced=True, require_reasoning=False))
    assert _ids(loose.records) == ["q0", "q1", "q5", "q6", "q7", "q8", "q9", "q10"]
    assert [s.name for s in loose.stages] == ["input", "answer parsed"]
    _check_counts_add_up(loose, len(RECORDS))
    forced = filter_traces(RECORDS, FilterConfig(keep_forced=True))
    assert "q5" in _ids(forced.records) and "q4" not in _ids(forced.records)


def test_when_nothing_survives_the_message_counts_each_stage_and_names_the_flag_that_keeps_more():
    from thinkrank.distill.filtering import empty_result_message

    forced = [record(i, i % 2 == 0, f"chain {i}.", "true", "forced") for i in range(8)]  # a local teacher's cut chains
    result = filter_traces(forced, FilterConfig())
    assert result.records == []
    assert [(s.name, s.kept) for s in result.stages] == [
        ("input", 8), ("answer parsed", 8), ("has reasoning", 8), ("not forced", 0), ("agrees with label", 0)]
    message = empty_result_message(result.stages)
    assert "input 8 -> answer parsed 8 -> has reasoning 8 -> not forced 0 -> agrees with label 0" in message
    assert "not forced: --keep-forced" in message and "--no-agree" not in message
    assert len(filter_traces(forced, FilterConfig(keep_forced=True)).records) == 4  # the four labelled true


def test_the_self_filter_drops_traces_the_judge_disagrees_with():
    seen = []

    def judge(records):  # a trained model's answers: it thinks passage 1 is relevant
        seen.append([r["qid"] for r in records])
        return ["true" if r["qid"] in ("q0", "q1", "q9") else "false" for r in records]

    result = filter_traces(RECORDS, FilterConfig(), self_judge=judge)
    assert seen == [["q0", "q1", "q9", "q10"]]  # judged once, only what survived the earlier stages
    assert _ids(result.records) == ["q0", "q9", "q10"]
    assert result.stages[-1].name == "self-filter" and result.stages[-1].dropped == 1
    assert [r["self_answer"] for r in result.records] == ["true", "true", "false"]
    _check_counts_add_up(result, len(RECORDS))


def test_balancing_keeps_the_asked_ratio_and_the_input_order():
    many = [record(i, i < 9, f"chain {i}", "true" if i < 9 else "false") for i in range(12)]  # 9 pos, 3 neg
    result = filter_traces(many, FilterConfig(balance=1.0, seed=4))
    kept = result.records
    assert sum(r["answer"] == "true" for r in kept) == 3 and sum(r["answer"] == "false" for r in kept) == 3
    assert [int(r["qid"][1:]) for r in kept] == sorted(int(r["qid"][1:]) for r in kept)
    assert result.stages[-1].name == "balanced" and result.stages[-1].dropped == 6
    _check_counts_add_up(result, 12)
    assert filter_traces(many, FilterConfig(balance=1.0, seed=4)).records == kept  # seeded
    marked = [{**r, "answer": r["answer_text"]} for r in many]
    two = balance_classes(marked, 2.0)  # two negatives per positive: 3 negatives -> round(1.5) = 2 positives
    assert sum(r["answer"] == "false" for r in two) == 3 and sum(r["answer"] == "true" for r in two) == 2
    few_neg = balance_classes(marked[6:], 1.0)  # 3 pos, 3 neg: nothing to drop
    assert len(few_neg) == 6
    with pytest.raises(InvalidInputError, match="balance"):
        filter_traces(many, FilterConfig(balance=0))


def test_records_that_are_not_traces_are_refused_by_line(tmp_path):
    path = tmp_path / "traces.jsonl"
    write_jsonl([RECORDS[0], {"qid": "q", "docid": "d"}], path)
    with pytest.raises(InvalidInputError, match="line 2 is not a trace record: missing query"):
        filter_traces(read_records(path), FilterConfig())
    with pytest.raises(InvalidInputError, match="label"):
        filter_traces([{**RECORDS[0], "label": "yes"}], FilterConfig())


def test_the_training_jsonl_has_the_exact_rank1_prompt_and_the_chain_then_the_answer(tmp_path):
    records = [record(0, True, "  The passage supports the claim.\n", "true"),
               record(1, False, "Nothing about it.", "false", template="scifact")]
    result = filter_traces(records, FilterConfig())
    n = write_sft_jsonl(sft_examples(result.records), tmp_path / "train.jsonl")
    lines = [json.loads(x) for x in (tmp_path / "train.jsonl").read_text().splitlines()]
    assert n == len(lines) == 2
    assert lines[0]["prompt"] == RANK1_PROMPT.format(query="claim number 0", passage="Passage 0 text.")
    assert lines[0]["prompt"].endswith("Passage: Passage 0 text.\n<think>")
    assert lines[1]["prompt"] == build_rank1_prompt("claim number 1", "Passage 1 text.", template="scifact")
    assert "Claim: claim number 1" in lines[1]["prompt"]
    assert lines[0]["completion"] == "The passage supports the claim.\n</think> true"
    assert lines[1]["completion"] == "Nothing about it.\n</think> false"
    assert (lines[0]["answer"], lines[0]["label"], lines[0]["qid"], lines[0]["source"]) == ("true", True, "q0", "positive")
    # the text a model is trained on reads as Rank1 writes it
    assert lines[0]["prompt"] + lines[0]["completion"] == (
        "Determine if the following passage is relevant to the query. Answer only with 'true' or 'false'.\n"
        "Query: claim number 0\nPassage: Passage 0 text.\n<think>The passage supports the claim.\n</think> true")


def test_completions_refuse_bad_answers_and_chains_that_close_themselves():
    assert completion_text("", "false") == "\n</think> false"
    with pytest.raises(InvalidInputError, match="true' or 'false"):
        completion_text("chain", "True")
    with pytest.raises(InvalidInputError, match="</think>"):
        completion_text("chain </think> more", "true")


def test_the_llamafactory_dataset_is_registered_and_holds_the_examples(tmp_path):
    examples = sft_examples(filter_traces(RECORDS, FilterConfig()).records)
    folder = write_llamafactory(examples, tmp_path / "lf")
    info = json.loads((folder / "dataset_info.json").read_text())
    assert list(info) == ["rank1_distill"]
    entry = info["rank1_distill"]
    assert entry["columns"] == {"prompt": "instruction", "query": "input", "response": "output"}
    rows = json.loads((folder / entry["file_name"]).read_text())
    assert len(rows) == len(examples) == 4
    for row, example in zip(rows, examples):
        assert set(row) == {"instruction", "input", "output"}
        assert row["instruction"] == example["prompt"] and row["input"] == "" and row["output"] == example["completion"]


@pytest.mark.slow
def test_the_rank1_self_judge_answers_with_the_model_per_template(smollm2_engine):
    from thinkrank.distill.self_filter import rank1_judge

    records = [record(0, True, "chain", "true"), record(1, False, "chain", "false", template="scifact"),
               record(2, True, "chain", "false")]
    judge = rank1_judge(engine=smollm2_engine, reasoning=False)
    tok = smollm2_engine.tokenizer
    t, f = tok.encode(" true")[0], tok.encode(" false")[0]
    contexts = [build_rank1_prompt(r["query"], r["passage"], template=r["template"]) + "\n</think>" for r in records]
    expected = ["true" if lp[t] >= lp[f] else "false" for lp in smollm2_engine.next_token_logprobs(contexts, [t, f])]
    result = filter_traces(records, FilterConfig(agree_with_label=False), self_judge=judge)
    assert [r["qid"] for r in result.records] == [r["qid"] for r, e in zip(records, expected) if e == r["answer_text"]]
    assert result.stages[-1].name == "self-filter"
    assert 0 < len(result.records) < len(records)  # the judge both kept and dropped
    assert [r["self_answer"] for r in result.records] == [e for r, e in zip(records, expected) if e == r["answer_text"]]
