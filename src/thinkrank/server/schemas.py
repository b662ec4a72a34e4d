"""Request and response bodies at the HTTP edge (pydantic), as the OpenAPI schema shows them.

One request model serves every rerank route: it is the union of Cohere v1/v2, Jina and TEI's
fields plus thinkrank's (``reasoning``, ``think_budget``, ``instruction``, ``return_reasoning``,
``stream``). Values are strict (``0`` is not ``false``, ``"3"`` not ``3``). Unknown fields are
ignored, as the hosted APIs do, so a client that sends a field thinkrank does not use (Cohere's
``priority``) still works; a known field thinkrank cannot honour as asked (TEI's
``truncate: false``) is refused, never silently ignored.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from thinkrank.calibration.selection import Rule
from thinkrank.errors import require

require("pydantic", "server")
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field  # noqa: E402


def _integral(value: Any) -> Any:
    # JSON has one number type: 3.0 is the integer 3 (JSON Schema says so too); 3.5 stays invalid.
    return int(value) if isinstance(value, float) and value.is_integer() else value


# The bound sits on the int itself, inside the validator: on the union ``int | None`` (or on a
# validator-wrapped int) pydantic writes it into the JSON Schema as a bare "ge", which is not
# JSON Schema, instead of "minimum".
PositiveInteger = Annotated[int, Field(ge=1), BeforeValidator(_integral)]


class DocumentIn(BaseModel):
    """A document given as an object (Cohere v1 and Jina accept these beside plain strings)."""

    model_config = ConfigDict(extra="allow", strict=True)

    text: str = Field(description="The document's text. Empty or blank: see docs/server.md (scored 0, no model work).")
    title: str | None = Field(None, description="Shown to the model before the text (`{title} {text}`).")
    id: str | None = Field(None, description="Your id for the document; unique within the request.")


class SelectIn(BaseModel):
    """thinkrank: which documents to keep (needs a server with --calibration). Conformal mode:
    ``recall`` (and ``alpha``); threshold mode: ``probability``. See docs/calibration.md."""

    model_config = ConfigDict(extra="forbid", strict=True)

    recall: float | None = Field(None, gt=0, le=1, description="Conformal mode: keep enough documents that, at "
                                 "confidence 1 - alpha over queries, recall of the relevant candidates is >= this.")
    alpha: float | None = Field(None, gt=0, lt=1, description="Conformal mode: the miss rate allowed (default 0.1).")
    rule: Rule | None = Field(
        None, description="Conformal mode: how the cut adapts to each query (default recall-probability: the shortest "
        "top whose probability of reaching the recall is above a calibrated level; score: one raw-score threshold; "
        "top-k: the same number for every query). See docs/calibration.md.")
    probability: float | None = Field(None, ge=0, le=1, description="Threshold mode: keep the documents whose "
                                      "calibrated probability is >= this.")


class RerankBody(BaseModel):
    """A rerank request. Give ``documents`` (Cohere/Jina shape) or ``texts`` (TEI shape)."""

    model_config = ConfigDict(extra="ignore", strict=True)

    model: str | None = Field(None, description="The served model's name (GET /v1/models). May be left out; other "
                              "names are answered by the served model unless the server runs with --strict-model-name.")
    query: str = Field(description="The search query.")
    documents: list[str | DocumentIn] | None = Field(
        None, description="Strings or {text, title?, id?} objects. The response uses the Cohere/Jina shape.")
    texts: list[str] | None = Field(None, description="TEI: strings; the response is TEI's bare list.")
    rank_fields: list[str] | None = Field(
        None, description="Cohere v1: the fields of each document object the model reads, in this order (default: "
        "title, then text), joined by spaces. A value that is not a string is read as its JSON text; a field a "
        "document lacks is skipped.")
    top_n: PositiveInteger | None = Field(None, description="Return only the best N results (all when absent).")
    return_documents: bool | None = Field(None, description="Include each document's text (default false).")
    return_text: bool | None = Field(None, description="TEI: include each text (default false).")
    raw_scores: bool | None = Field(
        None, description="TEI: `score` is the raw log-odds log p(true) - log p(false) (whose sigmoid is the "
        "usual score) instead of the probability. Pointwise only.")
    truncate: bool | None = Field(
        None, description="TEI: documents too long for the model are cut to fit (flagged `truncated` with "
        "`return_reasoning`); this server always does, so only true (or leaving it out) is accepted.")
    truncation_direction: str | None = Field(
        None, description="TEI: the side a long document is cut from; this server keeps the start, so only "
        "`right` is accepted.")
    max_tokens_per_doc: PositiveInteger | None = Field(
        None, description="Cut each document to this many tokens (never above the server's limit).")
    reasoning: bool | None = Field(
        None, description="thinkrank: reason before judging (true) or judge in one forward pass (false). "
        "Default: the server's setting. Pointwise only.")
    think_budget: PositiveInteger | None = Field(
        None, description="thinkrank: most reasoning tokens per document (at most the server's "
        "max_think_budget). Pointwise only, and only with reasoning on.")
    instruction: str | None = Field(None, description="thinkrank: text appended to the query (at most the server's "
                                    "max_instruction_chars).")
    return_reasoning: bool = Field(
        False, description="thinkrank: add `reasoning`, `answer`, `forced`, `truncated` (and pointwise `reasoned`) to "
        "each result.")
    stream: bool = Field(False, description="thinkrank: answer with Server-Sent Events, one per judged document, "
                         "then the ranking.")
    select: SelectIn | None = Field(
        None, description="thinkrank: return only the documents a calibrated selection keeps (`{\"recall\": 0.9, "
        "\"alpha\": 0.1}` or `{\"probability\": 0.5}`), and `selection` (how many were kept, expected recall and "
        "precision; TEI: the X-Thinkrank-Selection header). Needs a server started with --calibration; top_n "
        "applies after it.")


class ResultDocument(BaseModel):
    """The document as given: v1 (Cohere v1, Jina) returns every field of a document object, v2
    only its text."""

    model_config = ConfigDict(extra="allow")

    text: str


class RerankResult(BaseModel):
    """One ranked document. ``reasoning``/``answer``/``forced``/``truncated``/``reasoned`` only with ``return_reasoning``."""

    index: int = Field(description="The document's position in the request.")
    relevance_score: float = Field(description="Relevance in [0, 1], as the library computes it.")
    document: ResultDocument | None = None
    id: str | None = Field(None, description="The document's id, when the request gave one.")
    reasoning: str | None = None
    answer: str | None = None
    forced: bool | None = None
    truncated: bool | None = None
    reasoned: bool | None = Field(None, description="Pointwise, with `return_reasoning`: whether a reasoning chain "
                                  "made this judgment (a `--cascade` server reasons about some documents only).")
    probability: float | None = Field(None, description="thinkrank: the calibrated probability of relevance, when "
                                      "the server has a calibration (--calibration) for the request's setting.")


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ApiVersion(BaseModel):
    version: str


class BilledUnits(BaseModel):
    search_units: int


class Meta(BaseModel):
    api_version: ApiVersion
    billed_units: BilledUnits


class SelectionOut(BaseModel):
    """thinkrank: what a request's ``select`` kept."""

    mode: Literal["conformal", "threshold"]
    kept: int = Field(description="How many documents were kept (before top_n).")
    candidates: int = Field(description="How many documents the request sent.")
    expected_recall: float | None = Field(description="sum of the kept documents' calibrated probabilities over "
                                          "that of all; null when they sum to 0.")
    expected_precision: float | None = Field(description="mean calibrated probability of the kept documents; "
                                             "null when none is kept.")
    target_recall: float | None = None
    alpha: float | None = None
    rule: str | None = Field(None, description="Conformal mode: the rule that chose the cut.")
    recall_probability_level: float | None = Field(
        None, description="Conformal mode, rule recall-probability: the level the kept top's probability of reaching "
        "the recall exceeds (null: too few calibration queries for the alpha, everything kept).")
    tie_score: float | str | None = Field(
        None, description="Conformal mode, rule recall-probability: a query exactly at the level stops before a "
        "candidate whose raw score is below this (null: everything kept).")
    score_threshold: float | str | None = Field(None, description="Conformal mode, rule score: the raw-score cut "
                                                "(\"-inf\": too few calibration queries for the alpha, everything kept).")
    top_k: int | None = Field(None, description="Conformal mode, rule top-k: documents kept per query (null: all).")
    probability_threshold: float | None = None


class RerankResponse(BaseModel):
    """Cohere v1/v2 and Jina's response shape, sorted by score (ties keep input order)."""

    id: str
    model: str
    results: list[RerankResult]
    usage: Usage
    meta: Meta
    selection: SelectionOut | None = Field(None, description="thinkrank: with `select` in the request.")


class TEIResult(BaseModel):
    """TEI's shape: one item of the bare list the response is."""

    index: int
    score: float
    text: str | None = None
    probability: float | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "thinkrank"
    settings: dict[str, Any] = Field(default_factory=dict, description="The reranker's settings.")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorBody(BaseModel):
    """Every error: ``message`` says what was wrong (naming the field) and what to do;
    ``request_id`` is the ``X-Request-Id`` of the answer, which the server log names too."""

    message: str
    detail: Any = None
    request_id: str | None = None


class Health(BaseModel):
    status: str
