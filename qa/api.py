"""The REST API: a thin shell that validates JSON, calls the engine and returns its dataclasses.

Responses use the engine's own dataclasses (:class:`qa.types.Answer`, :class:`qa.types.Hit`)
as response models, so the JSON field names are the Python field names by construction.
Errors are ``{"error": <QAError class name>, "detail": <message>}`` with the error's
``http_status``; a user's mistake never produces a 5xx.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Literal, Protocol

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr
from starlette.exceptions import HTTPException as StarletteHTTPException

from qa.errors import QAError
from qa.feedback import FeedbackLog
from qa.types import Answer, Hit

if TYPE_CHECKING:
    from qa.config import Settings


class Engine(Protocol):
    """What the shells need from :class:`qa.QA` (tests pass fakes with these methods)."""

    settings: Settings

    def ask(self, question: str, history: list[str | dict[str, str]] | None = None) -> Answer: ...

    def search(self, question: str, k: int = 5) -> list[Hit]: ...

    def info(self) -> dict[str, Any]: ...


class Message(BaseModel):
    """A previous turn of the conversation."""

    model_config = ConfigDict(extra="forbid")
    role: Literal["user", "assistant"]
    content: StrictStr


class AskRequest(BaseModel):
    """A question, optionally with the conversation so far (for follow-up questions)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "question": "Which missile system will Ukraine use?",
                    "history": [],
                }
            ]
        },
    )
    question: StrictStr = Field(description="The question, in plain text.")
    history: list[StrictStr | Message] = Field(
        default_factory=list,
        description="Earlier turns, oldest first: previous questions as strings, or "
        '{"role": "user"|"assistant", "content": "..."} messages.',
    )

    def history_items(self) -> list[str | dict[str, str]]:
        return [h if isinstance(h, str) else h.model_dump() for h in self.history]


class SearchRequest(BaseModel):
    """A query for the passages that best match it."""

    model_config = ConfigDict(extra="forbid")
    question: StrictStr = Field(description="The query, in plain text.")
    k: StrictInt = Field(default=5, ge=1, le=50, description="How many passages to return.")


class SearchResponse(BaseModel):
    question: str
    hits: list[Hit]


class FeedbackRequest(BaseModel):
    """A rating of an answer, appended to the local feedback log."""

    model_config = ConfigDict(extra="forbid")
    question: StrictStr
    rating: Literal["helpful", "not_helpful"]
    answer: dict[str, Any] | None = Field(
        default=None, description="The answer being rated, as returned by /api/ask."
    )
    comment: StrictStr = Field(default="", max_length=4000)


class Health(BaseModel):
    status: Literal["ok"]


class ErrorBody(BaseModel):
    error: str = Field(description="The error class, e.g. InputError.")
    detail: str = Field(description="What went wrong and how to fix it.")


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 401, 413, 422, 429, 503)
}


def create_router(qa: Engine, feedback: FeedbackLog) -> APIRouter:
    """The ``/api`` routes over one engine."""
    router = APIRouter(prefix="/api", tags=["qa"], responses=_ERRORS)

    # Plain ``def`` endpoints: FastAPI runs them in its thread pool, so a slow
    # question never blocks the event loop serving the UI.
    @router.post("/ask", response_model=Answer, summary="Answer a question, with citations")
    def ask(req: AskRequest) -> Answer:
        """Extract the answer from the sources. ``found`` is false when the sources do
        not answer the question; ``citations`` give exact character offsets."""
        return qa.ask(req.question, history=req.history_items())

    @router.post("/search", response_model=SearchResponse, summary="Retrieve passages")
    def search(req: SearchRequest) -> SearchResponse:
        """The passages that best match the question, best first (no answer extraction)."""
        return SearchResponse(question=req.question, hits=qa.search(req.question, k=req.k))

    @router.post("/feedback", summary="Rate an answer (helpful / not helpful)")
    def rate(req: FeedbackRequest) -> dict[str, Any]:
        entry = feedback.record(req.rating, req.question, req.answer, channel="api", comment=req.comment)
        return {"recorded": True, "ts": entry["ts"]}

    @router.get("/info", summary="The index manifest")
    def info() -> dict[str, Any]:
        return qa.info()

    @router.get("/health", response_model=Health, summary="Liveness (never needs the token)")
    def health() -> Health:
        return Health(status="ok")

    return router


def _validation_message(exc: RequestValidationError) -> tuple[int, str]:
    """A one-line message for a pydantic error list; 400 for unparsable JSON, else 422."""
    parts = []
    status = 422
    for err in exc.errors():
        kind = err.get("type", "")
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        where = ".".join(loc) or "body"
        if kind == "json_invalid":
            status = 400
            parts.append("the request body is not valid JSON")
        elif kind == "missing":
            parts.append(f"{where}: this field is required")
        elif kind == "extra_forbidden":
            parts.append(f"{where}: unknown field")
        else:
            parts.append(f"{where}: {err.get('msg', 'invalid value')}")
    if not parts:
        parts.append("invalid request")
    # Pydantic repeats one message per union branch; keep the first of each.
    return status, "; ".join(dict.fromkeys(parts))


def install_error_handlers(app: FastAPI) -> None:
    """Translate QAErrors and request errors into ``{"error", "detail"}`` JSON."""

    @app.exception_handler(QAError)
    async def _qa_error(request: Request, exc: QAError) -> JSONResponse:
        return JSONResponse({"error": type(exc).__name__, "detail": str(exc)}, status_code=exc.http_status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        status, message = _validation_message(exc)
        name = "InvalidJSON" if status == 400 else "ValidationError"
        return JSONResponse({"error": name, "detail": message}, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        return JSONResponse(
            {"error": "HTTPError", "detail": detail},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )
