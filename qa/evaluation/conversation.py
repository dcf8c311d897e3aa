"""``qa eval-chat``: turn accuracy over multi-turn conversations, through the app's own pipeline.

A conversation file (``eval/conversations.json``) names the source folders to index and holds
conversations whose turns carry gold answers. Each turn is asked with ``QA.ask`` and the
conversation so far, as a client sends it: the user's earlier questions and the app's own
earlier answers. A turn is right when its answer is found and contains one of its gold strings
(case and spacing aside), or, for a turn whose gold is ``null``, when it is declined. Accuracy
is reported for first turns and follow-ups apart, and per kind of turn.

Run it with ``qa eval-chat FILE`` or ``python -m qa.evaluation.conversation FILE``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from qa.config import Settings
from qa.errors import InputError, QAError
from qa.evaluation.evaluate import read_json
from qa.ingest.sources import read_folder
from qa.store.embedding import Embedder, make_embedder
from qa.types import Document

#: Where the conversation indexes are cached when no ``--index`` is given (never the app's index).
DEFAULT_INDEX_ROOT = Path("artifacts/eval-chat-index")
#: The project's own conversation set.
DEFAULT_FILE = Path("eval/conversations.json")
FIRST = "first"
FOLLOW_UP = "follow-up"


class ChatFileError(InputError):
    """The conversation file is missing or malformed."""


@dataclass(frozen=True)
class ChatTurn:
    """One question of a conversation, its gold answers (None: it should be declined) and kind."""

    question: str
    gold: tuple[str, ...] | None
    kind: str


@dataclass(frozen=True)
class Conversation:
    id: str
    turns: tuple[ChatTurn, ...]


@dataclass(frozen=True)
class ChatSet:
    """A conversation file read and checked."""

    path: Path
    sha256: str
    sources: tuple[Path, ...]  # folders to index, resolved against the file's folder
    conversations: tuple[Conversation, ...]

    @property
    def turns(self) -> int:
        return sum(len(c.turns) for c in self.conversations)


def load_conversations(path: str | Path) -> ChatSet:
    """Read and check a conversation file; raises ChatFileError saying what is wrong and where."""
    path = Path(path)
    hint = f"give a conversation JSON file like {DEFAULT_FILE}"
    raw, data = read_json(path, "conversation file", hint, ChatFileError)
    if not isinstance(data, dict) or not isinstance(data.get("conversations"), list):
        raise ChatFileError(
            f'conversation file {path}: expected {{"sources": [...], "conversations": [...]}}'
        )
    names = data.get("sources")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise ChatFileError(f'conversation file {path}: "sources" must be a list of folder names')
    sources = tuple((path.parent / n).resolve() for n in names)
    for folder in sources:
        if not folder.is_dir():
            raise ChatFileError(f"conversation file {path}: source folder {folder} does not exist")
    conversations = [_conversation(c, f"conversation file {path}, conversation {i}")
                     for i, c in enumerate(data["conversations"], 1)]  # fmt: skip
    if not conversations:
        raise ChatFileError(f"conversation file {path} holds no conversations")
    ids = [c.id for c in conversations]
    if len(set(ids)) != len(ids):
        raise ChatFileError(f"conversation file {path}: conversation ids repeat")
    return ChatSet(path, hashlib.sha256(raw).hexdigest(), sources, tuple(conversations))


def _conversation(raw: Any, where: str) -> Conversation:
    if (
        not isinstance(raw, dict)
        or not isinstance(raw.get("id"), str)
        or not isinstance(raw.get("turns"), list)
    ):
        raise ChatFileError(f'{where}: expected {{"id": "...", "turns": [...]}}')
    if not raw["turns"]:
        raise ChatFileError(f"{where} ({raw['id']}) has no turns")
    turns = []
    for t, turn in enumerate(raw["turns"], 1):
        at = f"{where} ({raw['id']}), turn {t}"
        if (
            not isinstance(turn, dict)
            or not isinstance(turn.get("question"), str)
            or not turn["question"].strip()
        ):
            raise ChatFileError(f'{at}: expected {{"question": "...", "gold": [...] or null, "kind": "..."}}')
        gold = turn.get("gold")
        if gold is not None and (
            not isinstance(gold, list) or not gold or not all(isinstance(g, str) and g.strip() for g in gold)
        ):
            raise ChatFileError(f'{at}: "gold" must be a list of answer strings, or null for "declined"')
        kind = turn.get("kind", FIRST if t == 1 else FOLLOW_UP)
        if not isinstance(kind, str):
            raise ChatFileError(f'{at}: "kind" must be a string')
        turns.append(ChatTurn(turn["question"], tuple(gold) if gold is not None else None, kind))
    return Conversation(raw["id"], tuple(turns))


def source_documents(chat: ChatSet, settings: Settings) -> tuple[list[Document], list[str]]:
    """The documents of every source folder (ids prefixed by the folder's name), and the warnings."""
    docs: list[Document] = []
    warnings: list[str] = []
    for folder in chat.sources:
        result = read_folder(folder, settings.max_file_bytes)
        warnings += result.warnings
        docs += [dataclasses.replace(d, doc_id=f"{folder.name}/{d.doc_id}") for d in result.documents]
    if not docs:
        raise ChatFileError(f"the sources of {chat.path} hold no usable documents")
    return docs, warnings


# -- scoring --------------------------------------------------------------------------
def _norm(text: str) -> str:
    return " ".join(text.casefold().split())


def turn_correct(gold: tuple[str, ...] | None, text: str, found: bool) -> bool:
    """Right when found and the answer contains a gold string, or when declined and gold is None."""
    if gold is None:
        return not found
    return found and any(_norm(g) in _norm(text) for g in gold)


@dataclass(frozen=True)
class TurnResult:
    conversation: str
    turn: int  # 1-based
    kind: str
    question: str
    gold: tuple[str, ...] | None
    text: str
    found: bool
    score: float
    correct: bool
    rule: str = ""  # how the conversation model read the turn (``qa.answer.conversation``)
    resolved: str = ""  # the question the reader answered

    @property
    def group(self) -> str:
        return FIRST if self.turn == 1 else FOLLOW_UP


@dataclass
class ChatReport:
    """The turns asked and their scores, grouped as first turns, follow-ups and by kind."""

    file: str
    sha256: str
    settings: dict[str, Any]
    results: list[TurnResult]
    seconds: float = 0.0
    summary: dict[str, dict[str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.summary:
            self.summary = summarise(self.results)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarise(results: Sequence[TurnResult]) -> dict[str, dict[str, float]]:
    """Turns, right answers and accuracy for all turns, first turns, follow-ups and each kind."""
    groups: dict[str, list[TurnResult]] = {"all": list(results), FIRST: [], FOLLOW_UP: []}
    for r in results:
        groups[r.group].append(r)
    for r in results:
        groups.setdefault(f"kind:{r.kind}", []).append(r)
    out = {}
    for name, rows in groups.items():
        right = sum(r.correct for r in rows)
        out[name] = {
            "turns": len(rows),
            "correct": right,
            "accuracy": round(right / len(rows), 4) if rows else 0.0,
        }
    return out


# -- running ----------------------------------------------------------------------------
def index_dir_for(root: Path, docs: Sequence[Document], settings: Settings, embedder: Embedder) -> Path:
    """The cache folder for these documents and index settings."""
    h = hashlib.sha256()
    for d in sorted(docs, key=lambda d: d.doc_id):
        h.update(f"{d.doc_id}\0{d.title}\0{d.text}\0".encode())
    key = [embedder.name, getattr(embedder, "fingerprint", None), settings.encoding,
           settings.chunk_tokens, settings.chunk_overlap]  # fmt: skip
    h.update(json.dumps(key).encode())
    return root / f"conversations-{h.hexdigest()[:12]}"


def evaluate_chat(
    path: str | Path,
    settings: Settings,
    *,
    embedder: Embedder | None = None,
    index_root: str | Path | None = None,
    progress: bool = False,
) -> ChatReport:
    """Index the file's sources (cached in ``index_root``), ask every conversation turn by turn
    with the app's own earlier answers as history, and score the turns."""
    from qa.pipeline import QA

    t0 = time.perf_counter()
    chat = load_conversations(path)
    docs, warnings = source_documents(chat, settings)
    embedder = embedder or make_embedder(settings.model)
    index_dir = index_dir_for(Path(index_root or DEFAULT_INDEX_ROOT), docs, settings, embedder)
    qa = QA.from_documents(docs, settings=settings.replace(index_dir=index_dir), embedder=embedder,
                           warnings=warnings)  # fmt: skip
    results: list[TurnResult] = []
    for conv in chat.conversations:
        history: list[dict[str, str]] = []
        for n, turn in enumerate(conv.turns, 1):
            answer = qa.ask(turn.question, history=history)
            how = qa.resolve(turn.question, history=history)
            ok = turn_correct(turn.gold, answer.text, answer.found)
            results.append(TurnResult(conv.id, n, turn.kind, turn.question, turn.gold, answer.text,
                                      answer.found, answer.score, ok, how.rule, how.question))  # fmt: skip
            if progress:
                mark = "ok " if ok else "BAD"
                print(
                    f"{mark} {conv.id}#{n} [{turn.kind}] {turn.question} -> {answer.text[:80]}",
                    file=sys.stderr,
                )
            history += [
                {"role": "user", "content": turn.question},
                {"role": "assistant", "content": answer.text},
            ]
    shown = {"model": embedder.name, "reader": qa.reader.name, "min_confidence": settings.min_confidence,
             "index": str(index_dir)}  # fmt: skip
    return ChatReport(str(chat.path), chat.sha256, shown, results, round(time.perf_counter() - t0, 2))


def render_markdown(report: ChatReport) -> str:
    """The summary table, then every turn that was wrong."""
    lines = [
        f"# Conversation turns: {report.file}",
        "",
        "| turns | n | right | accuracy |",
        "|---|---:|---:|---:|",
    ]
    for name, row in report.summary.items():
        lines.append(f"| {name} | {row['turns']:.0f} | {row['correct']:.0f} | {row['accuracy']:.3f} |")
    wrong = [r for r in report.results if not r.correct]
    if wrong:
        lines += ["", "Wrong turns:", ""]
        for r in wrong:
            gold = "declined" if r.gold is None else " / ".join(r.gold)
            got = r.text if r.found else "(declined)"
            lines.append(
                f"- {r.conversation}#{r.turn} [{r.kind}] {r.question!r}: expected {gold!r}, got {got!r}"
                f" (read as {r.rule}: {r.resolved!r})"
            )
    lines += ["", f"reader {report.settings['reader']}, {report.seconds:.1f} s"]
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``qa eval-chat`` (also ``python -m qa.evaluation.conversation``)."""
    p.add_argument(
        "file", nargs="?", default=str(DEFAULT_FILE), help=f"conversation JSON (default {DEFAULT_FILE})"
    )
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument("--reader", choices=["auto", "model", "none"], help="answer selection")
    p.add_argument("--index", dest="index_dir",
                   help=f"where the indexes are cached (default {DEFAULT_INDEX_ROOT})")  # fmt: skip
    p.add_argument("--model", help="sentence-transformers model name or path")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the report")


def run_cli(args: argparse.Namespace, settings: Settings) -> int:
    """``qa eval-chat``: evaluate, then print Markdown or JSON (``--json``)."""
    report = evaluate_chat(args.file, settings, index_root=args.index_dir, progress=not args.quiet)
    print(json.dumps(report.to_dict(), ensure_ascii=False) if args.json else render_markdown(report))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m qa.evaluation.conversation``: the same as ``qa eval-chat``."""
    p = argparse.ArgumentParser(
        prog="python -m qa.evaluation.conversation", description=__doc__.split("\n")[0]
    )
    add_arguments(p)
    args = p.parse_args(argv)
    settings = Settings.from_env(model=args.model, reader=args.reader)
    try:
        return run_cli(args, settings)
    except QAError as exc:
        print(f"qa: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
