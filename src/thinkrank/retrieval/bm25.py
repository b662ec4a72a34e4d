"""BM25 with ``bm25s``: English stopwords, the PyStemmer English stemmer, ``title + " " + text``.

With the defaults (Lucene's BM25, k1 = 1.5, b = 0.75) this is bm25s' published setup: SciFact
nDCG@10 0.6863, Vaswani 0.4279 (docs/evaluation-data.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from thinkrank.datasets.collection import Collection
from thinkrank.datasets.runs import Run
from thinkrank.errors import InvalidInputError, require
from thinkrank.types import Document


class BM25:
    """A BM25 index over a corpus; :meth:`search` ranks it for many queries at once.

    Args:
        corpus: docid -> Document, or Documents. Each is indexed as ``title + " " + text``.
        k1, b, method: BM25 parameters and bm25s variant (``lucene``, ``robertson``, ``atire``, ``bm25l``, ``bm25+``).
        stopwords: bm25s stopword list (``"en"``) or None; stemmer: a PyStemmer language or None.
        progress: show bm25s' progress bars (on stderr).

    Raises:
        InvalidInputError: an empty corpus. MissingExtraError: bm25s/PyStemmer missing (``thinkrank[eval]``).
    """

    def __init__(self, corpus: Mapping[str, Document] | Iterable[Document], *, k1: float = 1.5, b: float = 0.75,
                 method: str = "lucene", stopwords: str | None = "en", stemmer: str | None = "english",
                 progress: bool = False) -> None:
        self._bm25s = require("bm25s", "eval")
        docs = list(corpus.values()) if isinstance(corpus, Mapping) else list(corpus)
        if not docs:
            raise InvalidInputError("cannot build a BM25 index over an empty corpus")
        self.doc_ids = [d.id for d in docs]
        self.stopwords = stopwords
        self.stemmer = require("Stemmer", "eval").Stemmer(stemmer) if stemmer else None
        self.progress = progress
        tokens = self._tokenize([f"{d.title} {d.text}" if d.title else d.text for d in docs])
        self.model = self._bm25s.BM25(k1=k1, b=b, method=method)
        self.model.index(tokens, show_progress=progress)

    def _tokenize(self, texts: list[str]) -> Any:
        return self._bm25s.tokenize(texts, stopwords=self.stopwords, stemmer=self.stemmer, show_progress=self.progress)

    def search(self, queries: Mapping[str, str], k: int = 100, name: str = "bm25") -> Run:
        """The top ``k`` documents per query (documents matching no query term are left out)."""
        if k < 1:
            raise InvalidInputError(f"k must be >= 1, got {k}")
        qids = list(queries)
        if not qids:
            return Run({}, name)
        k = min(k, len(self.doc_ids))
        indices, scores = self.model.retrieve(self._tokenize([queries[q] for q in qids]), k=k,
                                              show_progress=self.progress)
        rankings = {}
        for row, qid in enumerate(qids):
            rankings[qid] = [(self.doc_ids[int(i)], float(s)) for i, s in zip(indices[row], scores[row]) if s > 0]
        return Run(rankings, name)


def bm25_run(collection: Collection, k: int = 100, *, queries: Mapping[str, str] | None = None, **options: Any) -> Run:
    """BM25 over ``collection.corpus`` for ``queries`` (default: the collection's judged queries,
    or all when it has no qrels). ``options`` go to :class:`BM25`."""
    if queries is None:
        queries = collection.judged().queries if collection.qrels else collection.queries
    return BM25(collection.corpus, **options).search(queries, k)
