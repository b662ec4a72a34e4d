"""The data every layer speaks: documents in, judgments and rankings out."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from thinkrank.errors import InvalidInputError

if TYPE_CHECKING:
    from thinkrank.families.base import Fallback


@dataclass(frozen=True)
class Document:
    """A candidate passage. ``id`` is unique within one rerank call."""

    id: str
    text: str
    title: str | None = None

    @property
    def passage(self) -> str:
        """The text a model sees: ``"{title} {text}"`` when there is a title (as Rank1 does)."""
        return f"{self.title} {self.text}" if self.title else self.text


DocumentLike = str | Mapping[str, Any] | Document


def as_documents(documents: Sequence[DocumentLike]) -> list[Document]:
    """Validate and normalise user documents.

    Strings get their position as id (``"0"``, ``"1"``, …). Mappings need ``text`` and may
    carry ``id`` (or ``_id``/``docid``) and ``title``.

    Raises:
        InvalidInputError: a document that is not a string/mapping/Document, an empty or
            non-string text, or two documents with the same id.
    """
    if isinstance(documents, (str, bytes)) or not isinstance(documents, Sequence):
        raise InvalidInputError(
            "documents must be a list of strings, mappings with 'text', or Documents; "
            f"got {type(documents).__name__}"
        )
    out: list[Document] = []
    seen: dict[str, int] = {}
    for i, doc in enumerate(documents):
        out.append(_as_document(doc, i))
        prev = seen.setdefault(out[-1].id, i)
        if prev != i:
            raise InvalidInputError(
                f"documents {prev} and {i} share the id {out[-1].id!r}; ids must be unique "
                "within one call (drop the duplicate or give it another id)"
            )
    return out


def _as_document(doc: DocumentLike, index: int) -> Document:
    if isinstance(doc, Document):
        text, doc_id, title = doc.text, doc.id, doc.title
    elif isinstance(doc, str):
        text, doc_id, title = doc, str(index), None
    elif isinstance(doc, Mapping):
        if "text" not in doc:
            raise InvalidInputError(f"document {index} has no 'text' field (keys: {sorted(doc)})")
        text = doc["text"]
        raw_id = next((doc[k] for k in ("id", "_id", "docid") if doc.get(k) is not None), index)
        doc_id = id_text(raw_id, f"document {index}")
        title = doc.get("title") or None
        if title is not None and not isinstance(title, str):
            raise InvalidInputError(f"document {index}: 'title' must be a string, got {type(title).__name__}")
    else:
        raise InvalidInputError(
            f"document {index} is a {type(doc).__name__}; pass a string, a mapping with 'text', or a Document"
        )
    if not isinstance(text, str):
        raise InvalidInputError(f"document {index}: text must be a string, got {type(text).__name__}")
    if not text.strip():
        raise InvalidInputError(f"document {index} (id {doc_id!r}) has empty text; remove it or give it text")
    check_encodable(text, f"document {index} (id {doc_id!r}) text")
    if title is not None:
        check_encodable(title, f"document {index} (id {doc_id!r}) title")
    return Document(id=doc_id, text=text, title=title)


def id_text(value: Any, where: str) -> str:
    """An id given as a string or an integer, as text; anything else (a list, a float, a bool)
    is refused rather than turned into a string such as ``"[1, 2]"`` that no one meant."""
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return str(value)
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    raise InvalidInputError(f"{where}: an id must be a string or an integer, got {type(value).__name__} {shown}")


def check_query(query: Any) -> str:
    """Return ``query`` if it is a non-empty string, else raise :class:`InvalidInputError`."""
    if not isinstance(query, str):
        raise InvalidInputError(f"query must be a string, got {type(query).__name__}")
    if not query.strip():
        raise InvalidInputError("query is empty; pass the text you want documents ranked for")
    check_encodable(query, "query")
    return query


def check_instruction(instruction: Any) -> str | None:
    """Return ``instruction`` if it is None or a string of valid Unicode, else raise
    :class:`InvalidInputError`."""
    if instruction is None:
        return None
    if not isinstance(instruction, str):
        raise InvalidInputError(f"instruction must be a string or None, got {type(instruction).__name__}")
    check_encodable(instruction, "instruction")
    return instruction


def check_encodable(text: str, what: str) -> None:
    """Refuse text that is not valid Unicode (a lone surrogate, e.g. from a JSON ``"\\udc00"``
    escape or a badly decoded file): tokenizers and output files would fail on it much later."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInputError(
            f"{what} holds a lone surrogate {text[exc.start]!r} at character {exc.start}, which is not valid "
            "Unicode; fix the text's encoding"
        ) from None


@dataclass
class Judgment:
    """One document's verdict.

    Attributes:
        doc_id: the document's id; ``index``: its position in the input list.
        score: relevance in [0, 1]. Pointwise: p(true)/(p(true)+p(false)) at the answer token.
            Listwise: ``1 / (rank + 1)`` for the final 0-based rank, as the released Rank-K code
            writes its run files: distinct and strictly falling in the ranking's order, ties
            included (a tie keeps the order the model wrote it in), so a TREC file of these
            scores ranks exactly as the metrics do.
        reasoning: the model's chain of thought ("" with reasoning off). Listwise: the chain of
            the last window that placed this document.
        answer: pointwise, the likelier answer: "true"/"false" (Rank1), "yes"/"no" (Qwen3-Reranker,
            TFRank); None for listwise and setwise judgments, and where a family's fallback
            stands in for its reading (TFRank's "no-grade").
        prompt_tokens / reasoning_tokens: token counts of the prompt and of the chain.
        forced: the chain did not close within the budget, so it was cut to its last full
            sentence, closed, and the answer was read from the two answer tokens.
        truncated: the passage was cut to fit the passage token limit.
        tie_group: listwise only: the 0-based number of this document's group in the final
            ordering; documents the model tied (``[2] = [5]``) share it (None: pointwise).
        p_true / p_false: the probabilities of the two answer tokens as the engine reports them:
            full-softmax values on ``transformers``; renormalised over the two answers on
            ``openai``/``vllm`` (which restrict the vocabulary to read them exactly). ``score``
            is the same on every engine.
        reasoned: pointwise: whether a reasoning chain produced this judgment (False with
            reasoning off, and for candidates a cascade did not reason about); None: not recorded.
        quick_score: in a cascade, the candidate's no-reasoning (stage-1) score.
        probability: the calibrated probability that the document is relevant, when the
            reranker has a calibration (:mod:`thinkrank.calibration`); None (and left out of
            ``to_dict``) without one. Never cached: it follows from ``score`` and the calibration.
        stop_reason: pointwise, reasoning on: how the engine ended the chain: ``"stop"`` (the
            model closed it with ``</think>``), ``"eos"`` (end-of-sequence: ``forced``, yet not
            for the budget) or ``"length"`` (the budget ran out); None: not recorded (reasoning
            off, listwise, or a judgment cached before it was recorded).
        fallback: pointwise families other than Rank1: the reason word of the released default
            the family applied because the output could not be read (e.g. TFRank's ``"no-grade"``:
            score from the released 0.5 defaults); None (left out of ``to_dict``): read as released.
        parts: pointwise families that merge partial scores (TFRank's ``grade``, ``p_yes``,
            ``merged``); None (left out of ``to_dict``) otherwise.
    """

    doc_id: str
    index: int
    score: float
    reasoning: str = ""
    answer: str | None = None
    prompt_tokens: int = 0
    reasoning_tokens: int = 0
    forced: bool = False
    truncated: bool = False
    p_true: float | None = None
    p_false: float | None = None
    reasoned: bool | None = None
    quick_score: float | None = None
    tie_group: int | None = None
    probability: float | None = None
    stop_reason: str | None = None
    fallback: str | None = None
    parts: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        # Left out when unset, so outputs (and cache values) stay as they were before these existed.
        for optional in ("probability", "fallback", "parts"):
            if out[optional] is None:
                del out[optional]
        return out


@dataclass
class WindowTrace:
    """One listwise call: which documents it saw (input indices, in window order) and what it said.

    ``order`` holds the groups read from its ordering (input indices, best first; a group of
    several is a tie). ``parsed`` is False when the output held no usable ordering: the window
    then kept its previous order. ``fallback``: the released reader's fallback this window was
    read by (a family such as ReasonRank reading ids from a chain without ``<answer>``), None
    when it read a well-formed answer; ``to_dict`` leaves it out when None.
    """

    step: int
    start: int
    end: int
    indices: list[int]
    reasoning: str
    ordering: str
    order: list[list[int]]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    forced: bool = False
    parsed: bool = True
    fallback: Fallback | None = None

    def __post_init__(self) -> None:
        if isinstance(self.fallback, Mapping):  # read back from a cache or a JSON file
            from thinkrank.families.base import Fallback

            self.fallback = Fallback(**self.fallback)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if self.fallback is None:
            del out["fallback"]  # Rank-K's traces stay as they were
        return out


@dataclass
class ComparisonTrace:
    """One setwise call: the candidates a sort compared and which one the model chose.

    ``indices``: input indices in the sort's order, ``indices[0]`` the parent (the one kept on
    an unexpected answer); ``shown``: the same in the order the model saw them (``[1]`` first).
    ``chosen``: the input index the answer names, or None when the answer was unexpected; then
    ``fallback`` says why (``"unexpected"``) and ``detail`` how, and the sort kept the parent,
    as the released code does. ``step``: the comparison's number within its query, from 0.
    """

    step: int
    indices: list[int]
    shown: list[int]
    reasoning: str
    answer: str
    chosen: int | None
    fallback: str | None = None
    detail: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    stop_reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_trec_field(value: str, what: str) -> str:
    """``value`` if it can be a column of a TREC file: non-empty, no whitespace, no control
    characters (trec_eval and ir-measures split lines on whitespace). Other characters, such as
    format characters (zero-width joiners in emoji) or ones Unicode has not assigned yet, split
    nothing and are kept."""
    if not value or any(c.isspace() or unicodedata.category(c) in ("Cc", "Cs") for c in value):
        raise InvalidInputError(
            f"{what} {value!r} cannot be written to a TREC file: ids must be non-empty, without whitespace or "
            "control characters; rename it or write JSON instead"
        )
    return value


def trec_line(qid: str, doc_id: str, rank: int, score: float, tag: str) -> str:
    """One TREC run line. The score is written at full precision (``repr``, shortest round
    trip), so scores near 0 or 1 do not collapse into ties the reranker did not make."""
    check_trec_field(str(qid), "query id")
    check_trec_field(str(doc_id), "document id")
    check_trec_field(str(tag), "run tag")
    return f"{qid} Q0 {doc_id} {rank} {float(score)!r} {tag}"


def trec_lines(rankings: Sequence[Ranking], tag: str = "thinkrank") -> list[str]:
    """The TREC lines of several rankings, one query id each.

    Raises:
        InvalidInputError: two rankings share a query id (their lines would merge into one
            query), or an id cannot be written (see :func:`check_trec_field`).
    """
    seen: dict[str, int] = {}
    lines: list[str] = []
    for i, ranking in enumerate(rankings):
        qid = ranking.query_id or "0"
        if seen.setdefault(qid, i) != i:
            raise InvalidInputError(
                f"queries {seen[qid]} and {i} share the query id {qid!r}; a TREC run needs one id per query "
                "(give each query its own id)"
            )
        lines.extend(ranking.to_trec(qid, tag))
    return lines


@dataclass
class Ranking:
    """Judgments for one query, best first. Ties keep their input order (stable)."""

    query: str
    judgments: list[Judgment]
    query_id: str | None = None
    windows: list[WindowTrace] = field(default_factory=list)
    comparisons: list[ComparisonTrace] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.judgments = sorted(self.judgments, key=lambda j: (-j.score, j.index))
        self._by_id = {j.doc_id: j for j in self.judgments}

    def __len__(self) -> int:
        return len(self.judgments)

    def __iter__(self) -> Iterator[Judgment]:
        return iter(self.judgments)

    def __getitem__(self, key: int | str) -> Judgment:
        """``ranking[0]`` is the best judgment; ``ranking["doc-7"]`` looks a document up by id."""
        if isinstance(key, str):
            try:
                return self._by_id[key]
            except KeyError:
                raise KeyError(f"no document with id {key!r} in this ranking") from None
        return self.judgments[key]

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._by_id

    @property
    def doc_ids(self) -> list[str]:
        return [j.doc_id for j in self.judgments]

    def top(self, k: int) -> list[Judgment]:
        return self.judgments[: max(k, 0)]

    def truncate(self, top_n: int | None) -> Ranking:
        """A ranking with only the best ``top_n`` judgments (all when None)."""
        from thinkrank.validation import check_top_n

        if check_top_n(top_n) is None:
            return self
        return Ranking(self.query, self.judgments[:top_n], self.query_id, self.windows, self.comparisons)

    def select(self, calibration: Any, *, recall: float | None = None, alpha: float = 0.1,
               probability: float | None = None, rule: str | None = None) -> Any:
        """Which documents to keep: conformal mode (``recall`` reached with confidence
        ``1 - alpha``, by ``rule``: ``recall-probability`` when None, ``score`` or ``top-k``) or
        threshold mode (calibrated ``probability`` at least this); see
        :func:`thinkrank.calibration.select`. Returns a :class:`~thinkrank.calibration.Selection`."""
        from thinkrank.calibration.selection import DEFAULT_RULE, select

        return select(self, calibration, recall=recall, alpha=alpha, probability=probability,
                      rule=rule or DEFAULT_RULE)

    @property
    def unparsed_windows(self) -> int:
        """Listwise windows whose output held no usable ordering."""
        return sum(not w.parsed for w in self.windows)

    @property
    def unexpected_comparisons(self) -> int:
        """Setwise comparisons whose answer named no document of the set (the parent was kept)."""
        return sum(c.chosen is None for c in self.comparisons)

    @property
    def calls(self) -> list[WindowTrace | ComparisonTrace]:
        """The model calls a listwise or setwise ranking was made of (its windows or comparisons),
        each with its ``prompt_tokens`` and ``completion_tokens``; empty for a pointwise one."""
        return [*self.windows, *self.comparisons]

    def to_trec(self, query_id: str | None = None, tag: str = "thinkrank") -> list[str]:
        """TREC run lines ``qid Q0 docid rank score tag``, rank from 1, scores at full precision.

        Raises:
            InvalidInputError: a query id, document id or tag that is empty or holds whitespace
                or control characters (it would break the file's columns).
        """
        qid = query_id or self.query_id or "0"
        return [trec_line(qid, j.doc_id, r, j.score, tag) for r, j in enumerate(self.judgments, 1)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "query_id": self.query_id,
            "results": [{"rank": r, **j.to_dict()} for r, j in enumerate(self.judgments, 1)],
            "windows": [w.to_dict() for w in self.windows],
            # only setwise rankings have comparisons: other output stays as it was
            **({"comparisons": [c.to_dict() for c in self.comparisons]} if self.comparisons else {}),
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, **kwargs)
