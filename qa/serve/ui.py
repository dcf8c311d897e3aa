"""The chat UI (Gradio): a thin shell that calls the engine and shows :mod:`qa.serve.render`'s HTML.

:func:`create_ui` only builds the Blocks; :mod:`qa.serve.server` mounts it (with :data:`THEME`,
:func:`css` and :data:`JS`) beside the REST API, so tests can build it without a server.
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Before gradio is imported: no analytics call, no Hub lookup (the app is fully offline).
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gradio as gr

from qa.errors import InputError, QAError
from qa.serve import render
from qa.serve.api import Engine
from qa.serve.feedback import FeedbackLog
from qa.types import to_dict

STATIC_DIR = Path(__file__).parent / "static"
TITLE = "Ask the sources"

#: Fonts bundled with gradio and served by this app: nothing is fetched from a font CDN.
#: Only the full Regular and Bold faces: gradio's SemiBold files hold a subset of
#: the alphabet, which renders bold text with letters from a fallback font.
THEME = gr.themes.Default(
    primary_hue="indigo",
    neutral_hue="slate",
    radius_size="lg",
    font=[gr.themes.LocalFont("IBM Plex Sans", weights=(400, 700)), "system-ui", "sans-serif"],
    font_mono=[gr.themes.LocalFont("IBM Plex Mono", weights=(400, 700)), "ui-monospace", "monospace"],
)

#: Runs once on page load: the widget opens the chat with ``?embed=1``, which switches
#: the page to its compact layout; then the question box takes the focus.
JS = """
() => {
  const params = new URLSearchParams(window.location.search);
  if (params.has("embed")) document.body.classList.add("qa-embed");
  // Focus without scrolling: gradio's autofocus scrolls a short iframe out of place.
  const box = document.querySelector("#qa-input textarea");
  if (box) box.focus({ preventScroll: true });
}
"""


def css() -> str:
    """The UI's stylesheet (shipped in ``qa/serve/static/ui.css``)."""
    return (STATIC_DIR / "ui.css").read_text(encoding="utf-8")


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>])")


def _user_html(text: str) -> str:
    # The chat renders Markdown: show the user's words literally, never as markup.
    return _MD_SPECIAL.sub(r"\\\1", html.escape(" ".join(text.split()), quote=False))


#: One question per line; a dotfile, so the indexer never reads it as a document.
EXAMPLES_FILE = ".examples.txt"
#: What Gradio's thumbs send: True / "Like", False / "Dislike"; "" when one is clicked again.
_RATING: dict[object, str] = {
    True: "helpful", "Like": "helpful", False: "not_helpful", "Dislike": "not_helpful"
}  # fmt: skip


def example_questions(qa: Engine, limit: int = 4) -> list[str]:
    """Example questions drawn from the seeds: ``<seeds>/.examples.txt`` when present,
    else one question per document title."""
    path = Path(qa.settings.seeds_dir) / EXAMPLES_FILE
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        lines = []
    found = [q.strip() for q in lines if q.strip() and not q.lstrip().startswith("#")]
    if not found:
        try:
            docs = qa.info().get("documents", [])
        except QAError:
            docs = []
        titles = [d.get("title", "") for d in docs if isinstance(d, dict)]
        found = [f"What is “{t}” about?" for t in titles if t]
    return found[:limit]


def history_of(turns: Sequence[dict[str, Any]], settings: Any) -> list[str | dict[str, str]]:
    """The conversation as the engine (and ``POST /api/ask``) takes it: the most recent
    turns that fit ``max_history_turns`` and ``max_history_chars``."""
    out: list[str | dict[str, str]] = []
    chars = 0
    for t in reversed(turns[-settings.max_history_turns :]):
        pair: list[str | dict[str, str]] = [
            {"role": "user", "content": str(t["question"])},
            {"role": "assistant", "content": str(t["text"])},
        ]
        chars += len(t["question"]) + len(t["text"])
        if chars > settings.max_history_chars:
            break
        out = pair + out
    return out


def _header_html(qa: Engine) -> str:
    info: dict[str, Any] = {}
    try:
        info = qa.info()
    except QAError:
        pass
    n_docs = info.get("counts", {}).get("documents")
    stat = f"{n_docs} document{'s' * (n_docs != 1)} · " if isinstance(n_docs, int) else ""
    return (
        '<div id="qa-header">'
        '<div class="qa-logo" aria-hidden="true">❝</div>'
        f"<div><h1>{html.escape(TITLE)}</h1>"
        "<p>Answers are quoted word for word from your documents, with numbered citations "
        "you can check. Nothing leaves this machine.</p></div>"
        f'<div class="qa-badge">{html.escape(stat)}offline</div>'
        "</div>"
    )


def create_ui(
    qa: Engine, feedback: FeedbackLog | None = None, examples: Sequence[str] | None = None
) -> gr.Blocks:
    """Build the chat UI over one engine (not launched)."""
    log = feedback or FeedbackLog(qa.settings.feedback_log)
    questions = list(examples) if examples is not None else example_questions(qa)

    def too_long(question: str | None) -> bool:
        return len((question or "").strip()) > qa.settings.max_question_chars

    def add_question(question: str, chat: list[dict[str, Any]]) -> Any:
        """Show the question at once; the answer follows in ``respond``. A question over the
        length limit stays in the box, to be shortened, with the limit in a warning."""
        if too_long(question):  # not shown, and kept in the box; ``respond`` warns (a queued event)
            return gr.skip(), gr.skip(), question
        question = " ".join((question or "").split())
        if not question:
            return gr.skip(), gr.skip(), ""
        return [*chat, {"role": "user", "content": _user_html(question)}], "", question

    def respond(question: str, chat: list[dict[str, Any]], turns: list[dict[str, Any]]) -> Any:
        if not question:
            return gr.skip(), gr.skip(), gr.skip()
        try:
            answer = qa.ask(question, history=history_of(turns, qa.settings))
        except InputError as exc:  # the engine's words, e.g. the question's length and the limit
            gr.Warning(str(exc))
            return gr.skip() if too_long(question) else chat[:-1], gr.skip(), gr.skip()
        except QAError as exc:
            raise gr.Error(str(exc)) from None
        chat = [*chat, {"role": "assistant", "content": render.answer_html(answer)}]
        data = answer.to_dict()
        turn = {k: data[k] for k in ("question", "text", "found", "score", "citations")}
        return chat, [*turns, turn], render.sources_html(answer)

    def pick_example(chat: list[dict[str, Any]], evt: gr.SelectData) -> Any:
        value = evt.value
        return add_question(value.get("text", "") if isinstance(value, dict) else str(value), chat)

    def rate(turns: list[dict[str, Any]], evt: gr.LikeData) -> None:
        index = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        turn_no = int(index) // 2  # messages alternate user, assistant
        if evt.liked is None or not 0 <= turn_no < len(turns):
            return
        rating = _RATING.get(evt.liked, "withdrawn")  # a thumb clicked again sends ""
        turn = turns[turn_no]
        try:
            log.record(rating, turn["question"], turn, channel="ui")
        except QAError as exc:
            gr.Warning(str(exc))
            return
        gr.Info("Rating taken back." if rating == "withdrawn" else "Thanks, your feedback was recorded.")

    def clear() -> Any:
        return [], [], render.sources_html(None)

    def ask_api(question: str, history: list[Any] | None = None) -> dict[str, Any]:
        """Answer a question with citations (the same as POST /api/ask)."""
        try:
            return qa.ask(question, history=list(history or [])).to_dict()
        except QAError as exc:
            raise gr.Error(str(exc)) from None

    def search_api(question: str, k: int = 5) -> list[dict[str, Any]]:
        """The passages that best match the question (the same as POST /api/search)."""
        try:
            return [to_dict(h) for h in qa.search(question, k=int(k))]
        except QAError as exc:
            raise gr.Error(str(exc)) from None

    with gr.Blocks(title=f"{TITLE} · qa", analytics_enabled=False) as ui:
        turns = gr.State([])
        gr.HTML(_header_html(qa), elem_id="qa-header-block")
        with gr.Row(elem_id="qa-main", equal_height=False):
            with gr.Column(scale=3, min_width=340, elem_id="qa-chat-col"):
                chat = gr.Chatbot(
                    elem_id="qa-chat",
                    show_label=False,
                    height=560,
                    latex_delimiters=[],  # "$56 ... $10" in a document is money, not maths
                    sanitize_html=True,
                    feedback_options=("Like", "Dislike"),
                    placeholder=(
                        "<div class='qa-empty'><strong>Ask a question about the documents.</strong>"
                        "<br>Every answer is an exact quote, with its source.</div>"
                    ),
                    examples=[{"text": q} for q in questions] or None,
                    buttons=["copy"],
                    autoscroll=True,
                )
                with gr.Row(elem_id="qa-input-row"):
                    box = gr.Textbox(
                        elem_id="qa-input",
                        show_label=False,
                        placeholder="Ask a question…",
                        max_lines=4,
                        scale=8,
                        autofocus=False,
                        container=False,
                    )
                    send = gr.Button("Ask", variant="primary", scale=1, min_width=80, elem_id="qa-send")
                with gr.Row(elem_id="qa-tools"):
                    new = gr.Button("New conversation", size="sm", variant="secondary", elem_id="qa-new")
            with gr.Column(scale=2, min_width=300, elem_id="qa-sources-col"):
                gr.HTML('<div class="qa-panel-title">Sources</div>', elem_id="qa-sources-title")
                sources = gr.HTML(render.sources_html(None), elem_id="qa-sources")

        pending = gr.State("")
        answer_out = [chat, turns, sources]
        private: dict[str, Any] = {"api_visibility": "private"}
        for trigger in (box.submit, send.click):
            trigger(add_question, [box, chat], [chat, box, pending], queue=False, **private).then(
                respond, [pending, chat, turns], answer_out, show_progress="minimal", **private
            )
        chat.example_select(pick_example, [chat], [chat, box, pending], queue=False, **private).then(
            respond, [pending, chat, turns], answer_out, show_progress="minimal", **private
        )
        # queued, so its toast shows; "multiple": a thumb clicked again at once is not dropped
        chat.like(rate, [turns], None, api_visibility="private", trigger_mode="multiple")
        new.click(clear, None, answer_out, queue=False, **private)
        chat.clear(clear, None, answer_out, queue=False, **private)
        gr.api(ask_api, api_name="ask")
        gr.api(search_api, api_name="search")
    return ui
