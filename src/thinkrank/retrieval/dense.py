"""Dense retrieval with any sentence-transformers model: exact cosine search over the corpus."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from thinkrank.datasets.collection import Collection
from thinkrank.datasets.runs import Run
from thinkrank.errors import InvalidInputError, ModelLoadError, require
from thinkrank.types import Document


class DenseRetriever:
    """Embeds the corpus once (``title + " " + text``, normalised) and ranks it by cosine similarity.

    Args:
        model: a sentence-transformers model directory or Hub id, or a loaded ``SentenceTransformer``.
        corpus: docid -> Document, or Documents.
        query_prompt / document_prompt: text put before queries / documents (e5's ``"query: "``, …).
        batch_size, device, progress: encoding options (progress bars go to stderr).

    Raises:
        ModelLoadError: the model cannot be loaded (wrong path, offline and not cached).
        InvalidInputError: an empty corpus. MissingExtraError: sentence-transformers missing.
    """

    def __init__(self, model: str | Path | Any, corpus: Mapping[str, Document] | Iterable[Document], *,
                 query_prompt: str = "", document_prompt: str = "", batch_size: int = 64,
                 device: str | None = None, progress: bool = False) -> None:
        self.model = _load(model, device)
        docs = list(corpus.values()) if isinstance(corpus, Mapping) else list(corpus)
        if not docs:
            raise InvalidInputError("cannot build a dense index over an empty corpus")
        self.doc_ids = [d.id for d in docs]
        self.query_prompt, self.batch_size, self.progress = query_prompt, batch_size, progress
        texts = [document_prompt + (f"{d.title} {d.text}" if d.title else d.text) for d in docs]
        self.embeddings = self._encode(texts)

    def _encode(self, texts: list[str]) -> Any:
        return self.model.encode(texts, batch_size=self.batch_size, convert_to_tensor=True,
                                 normalize_embeddings=True, show_progress_bar=self.progress)

    def search(self, queries: Mapping[str, str], k: int = 100, name: str = "dense") -> Run:
        """The top ``k`` documents per query by cosine similarity."""
        if k < 1:
            raise InvalidInputError(f"k must be >= 1, got {k}")
        qids = list(queries)
        if not qids:
            return Run({}, name)
        util = require("sentence_transformers.util", "dense")
        query_emb = self._encode([self.query_prompt + queries[q] for q in qids])
        hits = util.semantic_search(query_emb, self.embeddings, top_k=min(k, len(self.doc_ids)))
        return Run({qid: [(self.doc_ids[h["corpus_id"]], float(h["score"])) for h in row]
                    for qid, row in zip(qids, hits)}, name)


def _load(model: str | Path | Any, device: str | None) -> Any:
    if not isinstance(model, (str, Path)):
        return model
    from thinkrank.hub import local_files_only, looks_like_path

    text = str(model)
    options: dict[str, Any] = {}
    if Path(text).expanduser().exists():
        if not Path(text).expanduser().is_dir():
            raise ModelLoadError(f"dense model {text} is a file; pass a sentence-transformers model folder or hub id")
    elif looks_like_path(text):
        raise ModelLoadError(f"dense model folder not found: {text}")
    elif local_files_only(text, what="dense model"):
        options["local_files_only"] = True
    st = require("sentence_transformers", "dense")
    try:
        return st.SentenceTransformer(text, device=device, **options)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"could not load the sentence-transformers model {str(model)!r}: {exc}. Pass a local model folder, "
            "or download the model once where the Hub is reachable."
        ) from exc


def dense_run(collection: Collection, model: str | Path | Any, k: int = 100, *,
              queries: Mapping[str, str] | None = None, **options: Any) -> Run:
    """Dense retrieval over ``collection.corpus`` (default queries: the judged ones, or all)."""
    if queries is None:
        queries = collection.judged().queries if collection.qrels else collection.queries
    return DenseRetriever(model, collection.corpus, **options).search(queries, k)
