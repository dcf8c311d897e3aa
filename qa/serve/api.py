"""The REST API: a thin shell that validates JSON, calls the engine and returns its dataclasses.

Responses use the engine's own dataclasses (:class:`qa.types.Answer`, :class:`qa.types.Hit`)
as response models, so the JSON field names are the Python field names by construction.
Errors are ``{"error": <QAError class name>, "detail": <message>}`` with the error's
``http_status``; a user's mistake never produces a 5xx.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol

import anyio
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
)
from starlette.exceptions import HTTPException as StarletteHTTPException

from qa.errors import QAError
from qa.serve.feedback import FeedbackLog, Rating
from qa.types import Answer, Document, Hit

if TYPE_CHECKING:
    from qa.config import Settings


class Engine(Protocol):
    """What the shells need from :class:`qa.QA` (tests pass fakes with these methods)."""

    settings: Settings

    def ask(self, question: str, history: list[str | dict[str, str]] | None = None) -> Answer: ...

    def search(self, question: str, k: int = 5) -> list[Hit]: ...

    def info(self) -> dict[str, Any]: ...

    def document(self, doc_id: str) -> Document: ...


_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _unicode_text(value: str) -> str:
    # JSON may spell lone UTF-16 surrogates ("\ud800"): such a string cannot be encoded
    # as UTF-8, so it could not be answered, logged or echoed back. A 422, not a 500.
    found = _SURROGATE.search(value)
    if found:
        raise ValueError(
            f"not valid Unicode text: a lone surrogate \\u{ord(found.group()):04x} at character "
            f"{found.start()}; send UTF-8 text"
        )
    return value


#: A JSON string that is valid Unicode text.
Text = Annotated[StrictStr, AfterValidator(_unicode_text)]


class Message(BaseModel):
    """A previous turn of the conversation."""

    model_config = ConfigDict(extra="forbid")
    role: Literal["user", "assistant"]
    content: Text


class AskRequest(BaseModel):
    """A question, optionally with the conversation so far (for follow-up questions)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "question": "Which missile system will Ukraine use?",
                    "history": [],
                },
                {
                    "question": "Since when?",
                    "history": [
                        {"role": "user", "content": "How much security assistance has the US provided?"},
                        {"role": "assistant", "content": "$56.2 billion"},
                    ],
                },
            ]
        },
    )
    question: Text = Field(description="The question, in plain text.")
    history: list[Text | Message] = Field(
        default_factory=list,
        description="The conversation so far, oldest first, as "
        '{"role": "user"|"assistant", "content": "..."} messages: each question asked and the '
        'answer\'s text it got. A follow-up ("Since when?", "Who approves them?") is read with '
        "them and does not repeat an earlier answer. A plain string is a user turn. At most "
        "max_history_turns turns (user + assistant) and max_history_chars characters, else 400.",
    )

    def history_items(self) -> list[str | dict[str, str]]:
        return [h if isinstance(h, str) else h.model_dump() for h in self.history]


class SearchRequest(BaseModel):
    """A query for the passages that best match it."""

    model_config = ConfigDict(extra="forbid")
    question: Text = Field(description="The query, in plain text.")
    k: StrictInt = Field(default=5, ge=1, le=100, description="How many passages to return.")


class SearchResponse(BaseModel):
    question: str
    hits: list[Hit]


class CitedSpan(BaseModel):
    """Where a rated answer came from (the fields of a citation the log keeps)."""

    model_config = ConfigDict(extra="ignore")
    doc_id: Text | None = None
    chunk_id: Text | None = None
    start: StrictInt | None = None
    end: StrictInt | None = None


class RatedAnswer(BaseModel):
    """The answer being rated, as /api/ask returned it; fields the log does not keep are ignored."""

    model_config = ConfigDict(extra="ignore")
    text: Text = ""
    found: StrictBool = False
    score: StrictFloat = Field(default=0.0, allow_inf_nan=False)
    citations: list[CitedSpan] = Field(default_factory=list)


class FeedbackRequest(BaseModel):
    """A rating of an answer, appended to the local feedback log."""

    model_config = ConfigDict(extra="forbid")
    question: Text
    rating: Rating
    answer: RatedAnswer | None = Field(
        default=None, description="The answer being rated, as returned by /api/ask."
    )
    comment: Text = Field(default="", max_length=4000)


class FeedbackResponse(BaseModel):
    recorded: Literal[True]
    ts: float = Field(description="When it was recorded (Unix time).")


class ReloadResponse(BaseModel):
    """What a rebuild from the seeds folder changed."""

    swapped: bool = Field(description="True when a new index went live.")
    up_to_date: bool = Field(description="True when nothing had changed.")
    generation: str = Field(description="The live index generation.")
    added: list[str]
    changed: list[str]
    removed: list[str]
    documents: int
    chunks: int
    embedded: int = Field(description="Chunks embedded by this build (the rest were reused).")
    seconds: float
    warnings: list[str] = Field(description="Seed files that were skipped, and why.")


class Health(BaseModel):
    status: Literal["ok"]


class ErrorBody(BaseModel):
    error: str = Field(description="The error class, e.g. InputError.")
    detail: str = Field(description="What went wrong and how to fix it.")


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 401, 408, 413, 422, 429, 503)
}
#: Rebuilds the index from the seeds and swaps it in; returns ReloadResponse's fields.
Reloader = Callable[[], dict[str, Any]]


def create_router(
    qa: Engine, feedback: FeedbackLog, reload: Reloader | None = None, max_concurrent: int = 0
) -> APIRouter:
    """The ``/api`` routes over one engine; ``POST /api/reload`` only when ``reload`` is given.

    ``max_concurrent``: how many questions (ask + search) the engine works on at once
    (0: up to the shared thread pool's 40); the others wait their turn, first come first served.
    """
    router = APIRouter(prefix="/api", tags=["qa"], responses=_ERRORS)
    # Questions run in worker threads, so a slow one never blocks the event loop serving
    # the UI. The engine is CPU-bound: more questions at once than cores only thrash.
    # Waiting ones hold no thread, and a fair limiter answers them in order of arrival.
    limiter = anyio.CapacityLimiter(max_concurrent) if max_concurrent > 0 else None

    @router.post("/ask", response_model=Answer, summary="Answer a question, with citations")
    async def ask(req: AskRequest) -> Answer:
        """Extract the answer from the sources. ``found`` is false when the sources do
        not answer the question; ``citations`` give exact character offsets."""
        work = partial(qa.ask, req.question, history=req.history_items())
        return await anyio.to_thread.run_sync(work, limiter=limiter)

    @router.post("/search", response_model=SearchResponse, summary="Retrieve passages")
    async def search(req: SearchRequest) -> SearchResponse:
        """The passages that best match the question, best first (no answer extraction)."""
        hits = await anyio.to_thread.run_sync(partial(qa.search, req.question, k=req.k), limiter=limiter)
        return SearchResponse(question=req.question, hits=hits)

    @router.post(
        "/feedback", response_model=FeedbackResponse, summary="Rate an answer (helpful / not helpful)"
    )
    def rate(req: FeedbackRequest) -> FeedbackResponse:
        """Append the rating to the feedback log (flushed to disk before this returns)."""
        answer = req.answer.model_dump() if req.answer is not None else None
        entry = feedback.record(req.rating, req.question, answer, channel="api", comment=req.comment)
        return FeedbackResponse(recorded=True, ts=entry["ts"])

    @router.get("/info", summary="The index manifest")
    def info() -> dict[str, Any]:
        return qa.info()

    # On the event loop, not in a worker thread: it answers even when every worker is busy.
    @router.head("/health", include_in_schema=False)  # as load balancers and `curl -I` check it
    @router.get("/health", response_model=Health, summary="Liveness (never needs the token)")
    async def health() -> Health:
        return Health(status="ok")

    if reload is not None:

        @router.post(
            "/reload",
            response_model=ReloadResponse,
            responses={409: {"model": ErrorBody, "description": "A build is already running"}},
            summary="Rebuild the index from the seeds folder and swap it in",
        )
        def rebuild() -> ReloadResponse:
            """Re-read the seeds, re-embed what changed and swap the new index in atomically:
            questions asked meanwhile are answered from the old index, never a half-built one."""
            return ReloadResponse(**reload())

    # Last: every other /api path, or a known one with another method, gets the API's own
    # {"error", "detail"} body, not the chat UI's (mounted at /) bare 404.
    @router.api_route("/{path:path}", methods=_METHODS, include_in_schema=False)
    def unknown(request: Request, path: str) -> JSONResponse:
        routes: dict[str, set[str]] = {}
        for r in router.routes:
            if isinstance(r, APIRoute) and "{" not in r.path:
                routes.setdefault(r.path, set()).update((r.methods or set()) - {"HEAD"})
        allowed = sorted(routes.get(request.url.path, ()))
        if allowed:
            return JSONResponse(
                {"error": "MethodNotAllowed", "detail": f"{request.url.path} takes {' or '.join(allowed)}"},
                status_code=405,
                headers={"Allow": ", ".join(allowed)},
            )
        detail = f"no such API endpoint: {request.url.path} (there are {', '.join(sorted(routes))})"
        return JSONResponse({"error": "NotFound", "detail": detail}, status_code=404)

    return router


_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def _validation_message(exc: RequestValidationError) -> tuple[int, str]:
    """A one-line message for a pydantic error list; 400 for unparsable JSON, else 422."""
    parts = []
    status = 422
    # leave out pydantic's names for a union's branches ("function-after[...]", "Message")
    errors = [(e, [str(p) for p in e.get("loc", ()) if p != "body" and not _branch(p)]) for e in exc.errors()]
    for err, loc in errors:
        kind = err.get("type", "")
        if (
            kind == "string_type"
            and isinstance(err.get("input"), dict)
            and any(
                other is not err and other_loc[: len(loc)] == loc and len(other_loc) > len(loc)
                for other, other_loc in errors
            )
        ):
            continue  # a message where text may also go: the message branch's errors say more
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


#: Pydantic names a union's model branch by its class in an error's location.
_BRANCHES = frozenset({"Message"})


def _branch(part: object) -> bool:
    return isinstance(part, str) and ("[" in part or part in _BRANCHES)


def _not_json(request: Request, exc: RequestValidationError) -> bool:
    """The body was sent as something other than JSON (curl's default form type, text/plain)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    whole_body = any(tuple(e.get("loc", ())) == ("body",) for e in exc.errors())
    return whole_body and kind != "application/json" and not kind.endswith("+json")


_UNPARSABLE = "There was an error parsing the body"


def install_error_handlers(app: FastAPI) -> None:
    """Translate QAErrors and request errors into ``{"error", "detail"}`` JSON."""

    @app.exception_handler(QAError)
    async def _qa_error(request: Request, exc: QAError) -> JSONResponse:
        return JSONResponse({"error": type(exc).__name__, "detail": str(exc)}, status_code=exc.http_status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        if _not_json(request, exc):
            detail = "send the body as JSON, with the header Content-Type: application/json"
            return JSONResponse({"error": "UnsupportedMediaType", "detail": detail}, status_code=415)
        status, message = _validation_message(exc)
        name = "InvalidJSON" if status == 400 else "ValidationError"
        return JSONResponse({"error": name, "detail": message}, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        error = "HTTPError"
        if exc.status_code == 400 and detail == _UNPARSABLE:
            # FastAPI's words when json.loads fails on something other than syntax,
            # e.g. arrays nested thousands deep (RecursionError).
            error, detail = "InvalidJSON", "the request body could not be parsed as JSON (nested too deeply?)"
        return JSONResponse(
            {"error": error, "detail": detail},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )
