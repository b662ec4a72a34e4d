"""BRIGHT, NevIR, FollowIR and ir_datasets adapters, on small local tables shaped like the
originals (loaded by the real `datasets` / `ir_datasets` libraries), and their offline errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import datasets  # in the test extra, like ir_datasets
import ir_datasets
import pytest

from thinkrank.datasets import (
    DatasetUnavailableError, Run, changed_documents, load_bright, load_followir, load_ir_dataset, load_nevir,
)
from thinkrank.errors import InvalidInputError, MissingExtraError
from thinkrank.evaluation.metrics import evaluate_run, p_mrr


def _parquet(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_list(rows).to_parquet(str(path))


BRIGHT_DOCS = [{"id": "bio/a.txt_0", "content": "Photosynthesis makes sugar."},
               {"id": "bio/b.txt_0", "content": "Mitochondria make ATP."},
               {"id": "bio/c.txt_0", "content": "The question's own page."}]
BRIGHT_EXAMPLES = [  # BRIGHT's fields; "N/A" marks no exclusions
    {"id": "0", "query": "How do plants make food?", "reasoning": "r", "gold_ids": ["bio/a.txt_0"],
     "gold_ids_long": ["bio/a.txt"], "excluded_ids": ["bio/c.txt_0"]},
    {"id": "1", "query": "Where is ATP made?", "reasoning": "r", "gold_ids": ["bio/b.txt_0"],
     "gold_ids_long": ["bio/b.txt"], "excluded_ids": ["N/A"]},
]


def test_bright_from_a_hub_snapshot_folder_with_excluded_ids(tmp_path):
    # The Hub layout: <config>/<domain>-00000-of-00001.parquet
    _parquet(tmp_path / "examples" / "biology-00000-of-00001.parquet", BRIGHT_EXAMPLES)
    _parquet(tmp_path / "documents" / "biology-00000-of-00001.parquet", BRIGHT_DOCS)
    _parquet(tmp_path / "examples" / "economics-00000-of-00001.parquet", BRIGHT_EXAMPLES[:1])
    bio = load_bright("biology", source=tmp_path)
    assert bio.queries == {"0": "How do plants make food?", "1": "Where is ATP made?"}
    assert bio.qrels == {"0": {"bio/a.txt_0": 1}, "1": {"bio/b.txt_0": 1}}
    assert bio.excluded == {"0": {"bio/c.txt_0"}}
    assert bio.corpus["bio/b.txt_0"].text == "Mitochondria make ATP."
    # The excluded page ranks first; BRIGHT drops it before scoring, so the gold page is rank 1:
    # nDCG@10 = 1 instead of 1/log2(3) = 0.6309.
    run = Run({"0": [("bio/c.txt_0", 3.0), ("bio/a.txt_0", 2.0)]})
    assert evaluate_run(run, bio.qrels, ["nDCG@10"]).aggregate["nDCG@10"] == pytest.approx(0.63093, abs=1e-5)
    assert evaluate_run(run, bio.qrels, ["nDCG@10"], exclude=bio.excluded).aggregate["nDCG@10"] == 1.0


def test_bright_from_loaded_dataset_objects_and_bad_domain():
    tables = {"examples": datasets.DatasetDict({"pony": datasets.Dataset.from_list(BRIGHT_EXAMPLES)}),
              "documents": {"pony": datasets.Dataset.from_list(BRIGHT_DOCS)}}
    pony = load_bright("pony", source=tables)
    assert len(pony.corpus) == 3 and set(pony.queries) == {"0", "1"}
    with pytest.raises(InvalidInputError, match="unknown BRIGHT domain 'zoology'"):
        load_bright("zoology", source=tables)
    with pytest.raises(InvalidInputError, match="BRIGHT pony documents row 0: missing \\['content'\\]"):
        load_bright("pony", source={**tables, "documents": {"pony": [{"id": "x", "text": "wrong field"}]}})


def test_nevir_mini_pairs_become_queries_documents_and_candidates(data_dir):
    nevir = load_nevir(data_dir / "nevir-mini" / "pairs.jsonl")
    assert len(nevir.pairs) == 50
    col = nevir.collection()
    first = nevir.pairs[0]
    assert (len(col.queries), len(col.corpus)) == (100, 100)
    assert col.queries[f"{first.id}_q2"] == first.q2 and col.corpus[f"{first.id}_doc1"].text == first.doc1
    assert col.qrels[f"{first.id}_q1"] == {f"{first.id}_doc1": 1, f"{first.id}_doc2": 0}
    assert col.run("candidates").doc_ids(f"{first.id}_q2") == [f"{first.id}_doc1", f"{first.id}_doc2"]


def test_nevir_from_a_hub_shaped_folder_and_bad_lines(tmp_path):
    # orionweller/NevIR keeps test.jsonl at the top, with extra annotation columns.
    rows = [{"id": "1-2", "WorkerId": "w", "q1": "Who won?", "q2": "Who did not win?", "doc1": "A won.", "doc2": "B lost."}]
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert load_nevir(tmp_path, split="test").pairs[0].doc2 == "B lost."
    bad = tmp_path / "pairs.jsonl"
    bad.write_text(json.dumps(rows[0]) + "\n" + json.dumps({"id": "x", "q1": "a", "q2": "b", "doc1": "c"}) + "\n")
    with pytest.raises(InvalidInputError, match=r"pairs.jsonl:2: missing or empty \['doc2'\]"):
        load_nevir(bad)


def _followir_snapshot(root, with_diff: bool) -> None:
    # jhu-clsp/core17-instructions-mteb: corpus/, queries/, instruction/, data/ (default), qrel_diff/, top_ranked/
    _parquet(root / "corpus" / "corpus-00000-of-00001.parquet",
             [{"_id": d, "title": f"T{d}", "text": f"text {d}"} for d in ("d1", "d2", "d3", "d4")])
    _parquet(root / "queries" / "queries-00000-of-00001.parquet",
             [{"_id": "1-og", "text": "oil spills"}, {"_id": "1-changed", "text": "oil spills"}])
    _parquet(root / "instruction" / "instruction-00000-of-00001.parquet",
             [{"query-id": "1-og", "instruction": "Any spill."}, {"query-id": "1-changed", "instruction": "Only in 2001."}])
    grades = {"1-og": {"d1": 1, "d2": 1, "d3": 0}, "1-changed": {"d1": 1, "d2": 0, "d3": 0}}
    _parquet(root / "data" / "default-00000-of-00001.parquet",
             [{"query-id": q, "corpus-id": d, "score": float(g)} for q, docs in grades.items() for d, g in docs.items()])
    _parquet(root / "top_ranked" / "top_ranked-00000-of-00001.parquet",
             [{"query-id": q, "corpus-ids": ["d1", "d2", "d3", "d4"]} for q in grades])
    if with_diff:
        _parquet(root / "qrel_diff" / "qrel_diff-00000-of-00001.parquet", [{"query-id": "1", "corpus-ids": ["d2"]}])


@pytest.mark.parametrize("with_diff", [True, False])
def test_followir_snapshot_gives_instructions_changed_qrels_and_p_mrr(tmp_path, with_diff):
    _followir_snapshot(tmp_path, with_diff)
    task = load_followir("core17", source=tmp_path)
    col = task.collection
    assert col.instructions == {"1-og": "Any spill.", "1-changed": "Only in 2001."}
    assert col.qrels["1-changed"] == {"d1": 1, "d2": 0, "d3": 0}
    assert task.changed_docs == {"1": ["d2"]}  # from qrel_diff, or computed from the two qrels
    assert col.run("top_ranked").doc_ids("1-og") == ["d1", "d2", "d3", "d4"]
    assert list(task.original().queries) == ["1-og"] and list(task.changed().queries) == ["1-changed"]
    # d2 is rank 1 with the original instruction and rank 3 with the changed one: 1 - 1/3.
    run = Run({"1-og": [("d2", 4.0), ("d1", 3.0), ("d3", 2.0)], "1-changed": [("d1", 4.0), ("d3", 3.0), ("d2", 2.0)]})
    assert p_mrr(run, run, task.changed_docs).score == pytest.approx(2 / 3)


def test_mfollowir_configs_carry_the_language_suffix():
    rows = {
        "corpus-fas": [{"_id": "d1", "title": "", "text": "متن"}],
        "queries-fas": [{"_id": "5-og", "text": "پرسش"}, {"_id": "5-changed", "text": "پرسش"}],
        "instruction-fas": [{"query-id": "5-og", "instruction": "a"}, {"query-id": "5-changed", "instruction": "b"}],
        "default-fas": [{"query-id": "5-og", "corpus-id": "d1", "score": 1.0},
                        {"query-id": "5-changed", "corpus-id": "d1", "score": 0.0}],
    }
    task = load_followir("mfollowir", source={k: datasets.Dataset.from_list(v) for k, v in rows.items()}, language="fas")
    assert task.changed_docs == {"5": ["d1"]} and task.collection.corpus["d1"].title is None
    with pytest.raises(InvalidInputError, match="mFollowIR needs language"):
        load_followir("mfollowir", source=rows)


def test_changed_documents_are_relevant_before_and_not_after():
    og = {"7-og": {"a": 2, "b": 1, "c": 0, "d": 1}}
    changed = {"7-changed": {"a": 1, "b": 0, "c": 0}}  # d is unjudged after the change: not relevant
    assert changed_documents(og, changed) == {"7": ["b", "d"]}


def test_ir_datasets_dataset_object_from_local_files(tmp_path):
    (tmp_path / "docs.tsv").write_text("d1\tCats purr.\nd2\tDogs bark.\n")
    (tmp_path / "queries.tsv").write_text("q1\tcats\n")
    (tmp_path / "qrels.trec").write_text("q1 0 d1 2\nq1 0 d2 0\n")
    ds = ir_datasets.create_dataset(docs_tsv=str(tmp_path / "docs.tsv"), queries_tsv=str(tmp_path / "queries.tsv"),
                             qrels_trec=str(tmp_path / "qrels.trec"))
    col = load_ir_dataset(ds)
    assert {d: doc.text for d, doc in col.corpus.items()} == {"d1": "Cats purr.", "d2": "Dogs bark."}
    assert col.queries == {"q1": "cats"} and col.qrels == {"q1": {"d1": 2, "d2": 0}}
    with pytest.raises(InvalidInputError, match="ir_datasets has no dataset 'no/such/dataset'"):
        load_ir_dataset("no/such/dataset")


def test_a_missing_library_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ir_datasets", None)  # what an absent package looks like to import
    with pytest.raises(MissingExtraError, match=r'pip install "thinkrank\[datasets\]"'):
        load_ir_dataset("beir/scifact/test")


_OFFLINE = """
import sys
from thinkrank.datasets import load_bright, load_ir_dataset, DatasetUnavailableError
for name, load in (("bright", lambda: load_bright("biology")), ("irds", lambda: load_ir_dataset("beir/scifact/test"))):
    try:
        load()
    except DatasetUnavailableError as exc:
        print(name, "|", exc)
"""


def test_unreachable_sources_raise_a_clear_error(tmp_path):
    # A fresh cache and no way out: the Hub in offline mode, ir_datasets' download through a closed proxy port.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "IR_DATASETS_HOME": str(tmp_path / "irds"),
           "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
    proc = subprocess.run([sys.executable, "-c", _OFFLINE], capture_output=True, text=True, env=env, timeout=120)
    lines = dict(line.split(" | ", 1) for line in proc.stdout.splitlines() if " | " in line)
    assert set(lines) == {"bright", "irds"}, proc.stdout + proc.stderr
    assert "BRIGHT biology: could not load 'xlangai/BRIGHT'" in lines["bright"] and "Download it once" in lines["bright"]
    assert "beir/scifact/test: its files are not in the ir_datasets cache" in lines["irds"]
    assert issubclass(DatasetUnavailableError, OSError)
