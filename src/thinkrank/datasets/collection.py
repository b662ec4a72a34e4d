"""A test collection (corpus, queries, qrels, runs) and the loader for collection folders."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from thinkrank.datasets.qrels import Qrels, read_qrels
from thinkrank.datasets.runs import Run, read_run
from thinkrank.errors import InvalidInputError
from thinkrank.io import field as get_field
from thinkrank.io import iter_jsonl
from thinkrank.types import Document, id_text

RUN_SUFFIXES = (".trec", ".txt", ".run", ".json", ".jsonl")


@dataclass
class Collection:
    """Everything needed to retrieve, rerank and score one test collection.

    Attributes:
        corpus: docid -> Document (``passage`` is ``"{title} {text}"``).
        queries: qid -> query text.
        qrels: qid -> {docid: grade}; empty when the collection has no judgments.
        runs: name -> run file path, or a loaded :class:`Run` (see :meth:`run`).
        instructions: qid -> instruction (FollowIR), for the queries that have one.
        excluded: qid -> docids to drop before scoring (BRIGHT's ``excluded_ids``).
        name / path: where it came from.
    """

    corpus: dict[str, Document]
    queries: dict[str, str]
    qrels: Qrels = field(default_factory=dict)
    runs: dict[str, Path | Run] = field(default_factory=dict)
    instructions: dict[str, str] = field(default_factory=dict)
    excluded: dict[str, set[str]] = field(default_factory=dict)
    name: str = ""
    path: Path | None = None

    def run(self, name: str) -> Run:
        """The run called ``name``, read from its file on first use.

        Raises:
            InvalidInputError: no such run (the message lists the ones there are).
        """
        if name not in self.runs:
            raise InvalidInputError(f"collection {self.name!r} has no run {name!r}; runs: {sorted(self.runs) or 'none'}")
        loaded = self.runs[name]
        if not isinstance(loaded, Run):
            loaded = self.runs[name] = read_run(loaded, name)
        return loaded

    def judged(self) -> Collection:
        """The same collection with only the queries that have judgments."""
        return self.subset(q for q in self.queries if self.qrels.get(q))

    def subset(self, qids: Iterable[str]) -> Collection:
        """The same collection restricted to ``qids``, in that order.

        Raises:
            InvalidInputError: a query id the collection does not have.
        """
        qids = list(qids)
        unknown = [q for q in qids if q not in self.queries]
        if unknown:
            raise InvalidInputError(f"collection {self.name!r} has no queries {unknown[:5]}{'…' if len(unknown) > 5 else ''}")
        keep = set(qids)
        return replace(
            self, queries={q: self.queries[q] for q in qids},
            qrels={q: d for q, d in self.qrels.items() if q in keep},
            instructions={q: i for q, i in self.instructions.items() if q in keep},
            excluded={q: d for q, d in self.excluded.items() if q in keep},
        )

    def documents(self, docids: Iterable[str]) -> list[Document]:
        """The documents with these ids, in order.

        Raises:
            InvalidInputError: an id not in the corpus (a run from another collection?).
        """
        out = []
        for docid in docids:
            doc = self.corpus.get(docid)
            if doc is None:
                raise InvalidInputError(f"document {docid!r} is not in the corpus of {self.name!r}; is the run from another collection?")
            out.append(doc)
        return out

    def candidates(self, run: Run, qid: str, k: int | None = None) -> list[Document]:
        """The documents ``run`` ranks for ``qid``, best first, at most ``k`` (all when None)."""
        docids = run.doc_ids(qid)
        return self.documents(docids if k is None else docids[:k])


def read_corpus(path: str | Path) -> dict[str, Document]:
    """Read a corpus JSONL: ``{"_id", "text", "title"?}`` per line (``id``/``docid``, ``contents`` also work).

    Raises:
        InvalidInputError: ``file:line`` of a bad line, a missing field or a repeated id.
    """
    corpus: dict[str, Document] = {}
    for number, obj in iter_jsonl(path):
        where = f"{path}:{number}"
        docid = id_text(get_field(obj, ("_id", "id", "docid", "doc_id"), where), f"{where}: document")
        text = get_field(obj, ("text", "contents", "content", "body"), where)
        title = obj.get("title") or None
        if not isinstance(text, str) or (title is not None and not isinstance(title, str)):
            raise InvalidInputError(f"{where}: 'text' and 'title' must be strings")
        if docid in corpus:
            raise InvalidInputError(f"{where}: document id {docid!r} appears twice")
        corpus[docid] = Document(id=docid, text=text, title=title)
    return corpus


def read_queries(path: str | Path) -> tuple[dict[str, str], dict[str, str]]:
    """Read a queries JSONL ``{"_id", "text", "instruction"?}``; returns ``(queries, instructions)``.

    Raises:
        InvalidInputError: ``file:line`` of a bad line, an empty query or a repeated id.
    """
    queries: dict[str, str] = {}
    instructions: dict[str, str] = {}
    for number, obj in iter_jsonl(path):
        where = f"{path}:{number}"
        qid = id_text(get_field(obj, ("_id", "id", "qid", "query_id"), where), f"{where}: query")
        text = get_field(obj, ("text", "query"), where)
        if not isinstance(text, str) or not text.strip():
            raise InvalidInputError(f"{where}: query {qid!r} has no text")
        if qid in queries:
            raise InvalidInputError(f"{where}: query id {qid!r} appears twice")
        queries[qid] = text
        if obj.get("instruction"):
            instructions[qid] = str(obj["instruction"])
    return queries, instructions


def load_collection(path: str | Path, split: str = "test") -> Collection:
    """Load a collection folder: this repository's layout or a BEIR folder.

    ``queries.jsonl`` is read from ``path``; ``corpus.jsonl`` from ``path`` or, for a split
    sub-folder such as ``scifact/train``, from its parent. Judgments come from ``qrels.trec``
    or, in a BEIR folder, ``qrels/<split>.tsv``; run files from ``runs/``. Queries are all of
    ``queries.jsonl``; use :meth:`Collection.judged` for the judged ones.

    Raises:
        InvalidInputError: the folder or one of its files is missing or malformed.
    """
    root = Path(path)
    if not root.is_dir():
        raise InvalidInputError(f"collection folder not found: {root} (expected queries.jsonl, corpus.jsonl, qrels)")
    queries, instructions = read_queries(_find(root, "queries.jsonl"))
    corpus_path = _find(root, "corpus.jsonl", also=root.parent)
    qrels = _load_qrels(root, split)
    runs_dir = root / "runs"
    runs: dict[str, Path | Run] = {}
    if runs_dir.is_dir():
        runs = {_run_name(p): p for p in sorted(runs_dir.iterdir()) if p.is_file() and _run_name(p)}
    name = root.name if corpus_path.parent == root else f"{root.parent.name}/{root.name}"
    return Collection(read_corpus(corpus_path), queries, qrels, runs, instructions, name=name, path=root)


def _find(root: Path, filename: str, also: Path | None = None) -> Path:
    for folder in (root, also) if also else (root,):
        for candidate in (folder / filename, folder / f"{filename}.gz"):
            if candidate.is_file():
                return candidate
    where = f"{root}" + (f" or {also}" if also else "")
    raise InvalidInputError(f"no {filename} in {where}")


def _load_qrels(root: Path, split: str) -> Qrels:
    for candidate in (root / "qrels.trec", root / "qrels.txt"):
        if candidate.is_file():
            return read_qrels(candidate)
    beir = root / "qrels"
    if beir.is_dir():
        tsv = beir / f"{split}.tsv"
        if tsv.is_file():
            return read_qrels(tsv)
        splits = sorted(p.stem for p in beir.glob("*.tsv"))
        raise InvalidInputError(f"no qrels/{split}.tsv in {root}; splits there: {splits or 'none'} (pass split=...)")
    return {}


def _run_name(path: Path) -> str:
    """``bm25.trec`` -> ``bm25``; "" for a file that is not a run."""
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    suffix = next((s for s in RUN_SUFFIXES if name.endswith(s)), None)
    return name[: -len(suffix)] if suffix else ""
