"""Collections from ``ir_datasets`` (https://ir-datasets.com): ``load_ir_dataset("beir/scifact/test")``."""

from __future__ import annotations

from typing import Any

from thinkrank.datasets.collection import Collection
from thinkrank.datasets.hub import DatasetUnavailableError
from thinkrank.errors import InvalidInputError, require
from thinkrank.types import Document


def load_ir_dataset(dataset: str | Any, *, max_docs: int | None = None) -> Collection:
    """Load an ``ir_datasets`` dataset (an id, or a dataset object such as ``ir_datasets.create_dataset(...)``).

    Documents keep their ``title`` when they have one; their text is ``text``/``body`` or the
    dataset's ``default_text()``. ``max_docs`` stops after that many documents (for a look).

    Raises:
        MissingExtraError: ``ir_datasets`` is not installed (``thinkrank[datasets]``).
        InvalidInputError: an unknown dataset id, or a dataset without documents or queries.
        DatasetUnavailableError: its files are not cached and could not be downloaded.
    """
    irds = require("ir_datasets", "datasets")
    name = dataset if isinstance(dataset, str) else getattr(dataset, "dataset_id", lambda: "ir_datasets dataset")()
    if isinstance(dataset, str):
        try:
            dataset = irds.load(dataset)
        except KeyError as exc:
            raise InvalidInputError(f"ir_datasets has no dataset {name!r} (see https://ir-datasets.com)") from exc
    for part in ("docs", "queries"):
        if not getattr(dataset, f"has_{part}")():
            raise InvalidInputError(f"{name}: has no {part}; pick a dataset id with both (e.g. 'beir/scifact/test')")
    try:
        corpus = _corpus(dataset, max_docs)
        queries = {q.query_id: _text(q) for q in dataset.queries_iter()}
        qrels: dict[str, dict[str, int]] = {}
        if dataset.has_qrels():
            for qrel in dataset.qrels_iter():
                qrels.setdefault(qrel.query_id, {})[qrel.doc_id] = int(qrel.relevance)
    except OSError as exc:  # requests' ConnectionError and failed downloads are OSErrors
        raise DatasetUnavailableError(
            f"{name}: its files are not in the ir_datasets cache (~/.ir_datasets or $IR_DATASETS_HOME) and could "
            f"not be downloaded: {type(exc).__name__}: {exc}. Download it once where the source is reachable."
        ) from exc
    return Collection(corpus, queries, qrels, name=name)


def _corpus(dataset: Any, max_docs: int | None) -> dict[str, Document]:
    corpus = {}
    for i, doc in enumerate(dataset.docs_iter()):
        if max_docs is not None and i >= max_docs:
            break
        text = _field_text(doc)
        # Without a plain text field, default_text() already joins the title in.
        title = (getattr(doc, "title", None) or None) if text is not None else None
        corpus[doc.doc_id] = Document(doc.doc_id, text if text is not None else doc.default_text(), title)
    return corpus


def _text(record: Any) -> str:
    text = _field_text(record)
    return text if text is not None else record.default_text()


def _field_text(record: Any) -> str | None:
    for key in ("text", "body"):
        value = getattr(record, key, None)
        if isinstance(value, str):
            return value
    return None
