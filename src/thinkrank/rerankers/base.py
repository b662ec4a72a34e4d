"""What every reranker offers: ``rerank`` for one query, ``rerank_many`` for many at once."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from thinkrank.errors import InvalidInputError
from thinkrank.families.base import Kind
from thinkrank.types import DocumentLike, Ranking, as_documents, check_instruction, check_query


@dataclass(frozen=True)
class RerankRequest:
    """One query to rerank: its text, candidates, and optional id and per-query instruction."""

    query: str
    documents: Sequence[DocumentLike]
    query_id: str | None = None
    instruction: str | None = None


RequestLike = RerankRequest | tuple[str, Sequence[DocumentLike]]


def as_request(item: RequestLike, position: int) -> RerankRequest:
    if isinstance(item, RerankRequest):
        return item
    if isinstance(item, tuple) and len(item) == 2:
        return RerankRequest(item[0], item[1])
    raise InvalidInputError(
        f"rerank_many item {position} must be (query, documents) or a RerankRequest, got {type(item).__name__}"
    )


class ProgressTracker:
    """Adapts an engine's per-batch progress calls (``tracker(n)``: ``n`` more items done) to a
    reranker's ``progress(done, total)`` over one call; ``total`` may grow as work is added."""

    def __init__(self, callback: Callable[[int, int], None] | None, total: int) -> None:
        self.callback, self.total, self.done = callback, total, 0

    def __call__(self, n: int) -> None:
        self.done += n
        if self.callback:
            self.callback(self.done, self.total)


class Reranker(ABC):
    """Base of :class:`~thinkrank.Rank1` and :class:`~thinkrank.RankK`.

    A reranker family declares ``kind``, what one model call judges (:data:`~thinkrank.families.base.Kind`);
    ``judges`` is what one result stands on alone: ``"pair"`` when each pair's judgment is
    independent of the other candidates (so it is cached and distributed per pair), else the
    whole query's candidates are one unit. The cache, the CLI, the server and Ray ask these two,
    never the class or its methods.
    """

    kind: ClassVar[Kind]

    @classmethod
    def judges_for(cls, **options: Any) -> Kind:
        """``judges`` of the reranker ``cls(model, **options)`` would be, without building it
        (a Ray factory ``partial(Rank1, model, cascade=...)``). Families whose options change
        it (Rank1's cascade) override this."""
        return cls.kind

    @property
    def judges(self) -> Kind:
        """What one result of this reranker stands on: ``"pair"`` or the whole query."""
        return self.kind

    @property
    @abstractmethod
    def settings(self) -> dict[str, Any]:
        """Everything besides the query and documents that changes a result, as plain JSON
        values: ``mode`` (``"pointwise"`` or ``"listwise"``), ``model``, ``engine``, prompt,
        budgets, …. Caches key results by it; reports and logs show it."""

    def rerank(
        self,
        query: str,
        documents: Sequence[DocumentLike],
        top_n: int | None = None,
        *,
        query_id: str | None = None,
        instruction: str | None = None,
    ) -> Ranking:
        """Rerank ``documents`` for ``query``; the best ``top_n`` (all when None), best first.

        Raises:
            InvalidInputError: an empty query, a bad document, or duplicate document ids.
        """
        return self.rerank_many([RerankRequest(query, documents, query_id, instruction)], top_n=top_n)[0]

    @abstractmethod
    def rerank_many(self, requests: Sequence[RequestLike], top_n: int | None = None) -> list[Ranking]:
        """Rerank many queries at once (all their work batched together), one Ranking each."""

    def check(self, request: RequestLike) -> None:
        """Every check :meth:`rerank_many` makes on ``request`` before model work, and nothing
        else (tokenizing only): a caller that batches many callers' requests together (the
        server) runs it on each first, so that one bad request never fails the others' call.

        Raises:
            InvalidInputError: what ``rerank_many`` would refuse: an empty query, a bad document
                or instruction, or a query and instruction too long for the model's context.
        """
        req = as_request(request, 0)
        check_query(req.query)
        as_documents(req.documents)
        check_instruction(req.instruction)


R = TypeVar("R", bound=Reranker)


class instance_kind(Generic[R]):  # noqa: N801 (used as a decorator, like property)
    """``kind`` for a reranker that wraps another (the cache, a lazy build, Ray): a decorator,
    like ``property``, whose function reads the wrapped reranker's kind.

    Not a ``property``: model rerankers declare ``kind`` as a ClassVar, read from the class
    before a model loads (``RerankerSpec.kind``), and a property may not override a class
    variable under mypy; this descriptor gives ``Kind`` on an instance, as the ClassVar does. A
    wrapper class itself has no kind (AttributeError): only an instance knows what it wraps.
    """

    def __init__(self, fget: Callable[[R], Kind]) -> None:
        self.fget = fget
        self.__doc__ = fget.__doc__

    def __get__(self, obj: R | None, owner: type | None = None) -> Kind:
        if obj is None:
            raise AttributeError(f"{getattr(owner, '__name__', 'this reranker')}.kind is its wrapped reranker's: "
                                 "ask an instance")
        return self.fget(obj)
