"""The ``qa`` command line: a thin shell over the ``QA`` facade.

Exit codes: 0 success, 1 unexpected error, 2 bad input or settings, 3 seeds problem,
4 index missing/damaged/stale, 5 another build is running, 6 model problem,
130 interrupted. Answers that were not found in the sources exit 0 with ``found``
false (``--strict`` makes them exit 7).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from qa.config import Settings
from qa.errors import QAError

NOT_FOUND_EXIT = 7


def _common(p: argparse.ArgumentParser, index_help: str = "index folder (default: index)") -> None:
    p.add_argument("--index", dest="index_dir", help=index_help)
    p.add_argument("--model", help="sentence-transformers model name or path")
    p.add_argument("-q", "--quiet", action="store_true", help="print only results and errors")


def _reader_path(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reader-path", metavar="DIR",
                   help="reader folder: a Hugging Face extractive QA checkpoint or this project's "
                        "reader (default: the shipped one; QA_READER_PATH)")  # fmt: skip


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="qa", description="Offline extractive question answering with exact citations."
    )
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("build", help="build or update the index from the seeds folder")
    p.add_argument("--seeds", dest="seeds_dir", help="seeds folder (default: seeds)")
    p.add_argument("--cluster", metavar="WHERE",
                   help="build on Ray: local:N (N workers started here for the build), auto or "
                        "ray://HOST:PORT (a running cluster); needs pip install 'qa[cluster]'")  # fmt: skip
    _common(p)

    p = sub.add_parser("ask", help="answer a question with a cited quote")
    p.add_argument("question")
    p.add_argument("--history", action="append", default=[], metavar="Q",
                   help="an earlier question, for follow-ups (repeatable, oldest first)")  # fmt: skip
    p.add_argument("--answer", dest="history", action="append", type=_assistant, metavar="A",
                   help="the answer the --history question before it got (repeatable)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the answer as JSON")
    p.add_argument("--reader", choices=["auto", "model", "none"], help="answer selection")
    p.add_argument("--strict", action="store_true", help=f"exit {NOT_FOUND_EXIT} when not found")
    _reader_path(p)
    _common(p)

    p = sub.add_parser("search", help="show the best matching passages")
    p.add_argument("question")
    p.add_argument("-k", type=int, default=5, help="number of passages (default 5)")
    p.add_argument("--json", action="store_true", help="print the hits as JSON")
    _common(p)

    p = sub.add_parser("info", help="show the index manifest")
    _common(p)

    p = sub.add_parser("serve", help="start the chat app, widget and REST API")
    p.add_argument("--seeds", dest="seeds_dir", help="seeds folder (default: seeds)")
    p.add_argument("--host", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 7860)")
    p.add_argument("--read-only", dest="read_only", action="store_const", const=True,
                   help="one of several replicas: never build, switch to each generation another "
                        "process publishes")  # fmt: skip
    _reader_path(p)
    _common(p)

    p = sub.add_parser("eval", help="measure retrieval, answers and abstention on a SQuAD file")
    p.add_argument("file", help="SQuAD JSON (v1.1 or v2.0)")
    p.add_argument("--json", action="store_true", help="print one JSON object of metrics")
    p.add_argument("--limit", type=int, help="ask at most N questions")
    p.add_argument("--reader", choices=["auto", "model", "none"], help="answer selection")
    p.add_argument("--unindexed", type=float, default=0.0, metavar="F",
                   help="leave a seeded fraction F of documents out of the index")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--articles", metavar="TITLES",
                   help="only these articles (comma-separated titles), or 'heldout': those the "
                        "reader did not train on")  # fmt: skip
    p.add_argument("--questions-from", metavar="TITLES",
                   help="ask only the questions of these articles (titles or 'heldout'); the "
                        "corpus stays the whole file")  # fmt: skip
    p.add_argument("--out", help="folder for the Markdown table and PNG plot")
    _reader_path(p)
    _common(p, "folder where evaluation indexes are cached, one per file and settings "
               "(default: artifacts/eval-index; never the app's index)")  # fmt: skip
    from qa.evaluation.conversation import add_arguments as chat_arguments

    p = sub.add_parser("eval-chat", help="turn accuracy of follow-up questions over conversations")
    chat_arguments(p)
    return ap


def _assistant(answer: str) -> dict[str, str]:
    return {"role": "assistant", "content": answer}


def _parse(ap: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse, reporting an unknown option with its own command's usage (argparse's subparsers
    leave it to the top-level parser), and check that each --answer follows a --history."""
    args, extra = ap.parse_known_args(argv)
    sub = next(a for a in ap._actions if isinstance(a, argparse._SubParsersAction))
    command = sub.choices[args.command]
    if extra:
        command.error(f"unrecognized arguments: {' '.join(extra)}")
    turns = getattr(args, "history", None) or []
    for before, turn in zip([None, *turns], turns, strict=False):
        if isinstance(turn, dict) and not isinstance(before, str):
            command.error("each --answer must follow the --history question it answered")
    return args


def _settings(args: argparse.Namespace) -> Settings:
    keys = (
        "seeds_dir", "index_dir", "model", "host", "port", "reader", "reader_path", "cluster", "read_only"
    )  # fmt: skip
    return Settings.from_env(**{k: getattr(args, k, None) for k in keys})


def configure_logging(quiet: bool = False) -> None:
    """Log lines as ``qa: warning: ...`` on stderr (only errors when ``quiet``). A skipped seed
    file is logged once, as it is read; a third-party library's own complaints about a file
    (pypdf's "EOF marker not found") are left out, since the skip names the file and why."""
    logging.addLevelName(logging.WARNING, "warning")
    logging.addLevelName(logging.ERROR, "error")
    logging.basicConfig(
        level=logging.ERROR if quiet else logging.WARNING, format="qa: %(levelname)s: %(message)s"
    )
    logging.getLogger("pypdf").setLevel(logging.CRITICAL)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(parser(), argv)
    configure_logging(args.quiet)
    try:
        return int(_COMMANDS[args.command](args) or 0)
    except QAError as exc:
        print(f"qa: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("qa: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of our output went away (``| head``)
        return 0
    except OSError as exc:  # the file system refused something no check above foresaw
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"qa: error: {exc.strerror or exc or type(exc).__name__}{where}", file=sys.stderr)
        return 1


def _progress(quiet: bool) -> tuple[Callable[[int, int], None] | None, Callable[[], None]]:
    """A tqdm progress bar on stderr for embedding, when there is enough work to show."""
    if quiet or (not sys.stderr.isatty() and not os.environ.get("QA_PROGRESS")):
        return None, lambda: None
    from tqdm import tqdm

    bar: dict[str, Any] = {}

    def update(done: int, total: int) -> None:
        if "bar" not in bar:
            bar["bar"] = tqdm(total=total, desc="embedding", unit="chunk", file=sys.stderr)
        bar["bar"].n = done
        bar["bar"].refresh()

    return update, lambda: bar["bar"].close() if "bar" in bar else None


def cmd_build(args: argparse.Namespace) -> int:
    from qa.pipeline import QA

    settings = _settings(args)
    progress, close = _progress(args.quiet)
    try:
        qa = QA.build(settings=settings, progress=progress)
    finally:
        close()
    report = qa.last_build
    assert report is not None  # the skipped files were logged as they were read
    if report.up_to_date:
        print(
            f"index up to date: {report.documents} documents, {report.chunks} chunks in {settings.index_dir}"
        )
    else:
        print(
            f"built {settings.index_dir}: {report.documents} documents, {report.chunks} chunks "
            f"({report.embedded} embedded, the rest reused) in {report.seconds:.1f}s; "
            f"added {len(report.added)}, changed {len(report.changed)}, removed {len(report.removed)}"
        )
    return 0


def cmd_ask(args: argparse.Namespace) -> int:
    from qa.pipeline import QA
    from qa.serve.render import render_text

    qa = QA.load(settings=_settings(args))
    answer = qa.ask(args.question, history=args.history or None)
    if args.json:
        print(json.dumps(answer.to_dict(), ensure_ascii=False, indent=2))
    else:
        print(render_text(answer))
    return NOT_FOUND_EXIT if args.strict and not answer.found else 0


def cmd_search(args: argparse.Namespace) -> int:
    from qa.pipeline import QA
    from qa.types import to_dict

    qa = QA.load(settings=_settings(args))
    hits = qa.search(args.question, k=args.k)
    if args.json:
        print(json.dumps([to_dict(h) for h in hits], ensure_ascii=False, indent=2))
        return 0
    for hit in hits:
        ch = hit.chunk
        dense = f"{hit.dense_score:.3f}" if hit.dense_score is not None else "-"
        bm25 = f"{hit.lexical_score:.2f}" if hit.lexical_score is not None else "-"
        print(f"{hit.rank}. {ch.title} [{ch.doc_id} {ch.start}:{ch.end}] "
              f"score {hit.score:.4f} (cosine {dense}, bm25 {bm25})")  # fmt: skip
        print("   " + " ".join(ch.text.split())[:300])
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from qa.store import index

    settings = _settings(args)
    from qa.store import files as store

    gen = store.current_generation(Path(settings.index_dir))
    manifest = index.read_manifest(gen)
    manifest["path"] = str(gen)
    print(json.dumps(manifest, ensure_ascii=False, indent=2))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from qa.serve.server import serve

    serve(_settings(args))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from qa.evaluation.evaluate import run_cli

    return int(run_cli(args, _settings(args)) or 0)


def cmd_eval_chat(args: argparse.Namespace) -> int:
    from qa.evaluation.conversation import run_cli

    return run_cli(args, _settings(args))


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "build": cmd_build,
    "ask": cmd_ask,
    "search": cmd_search,
    "info": cmd_info,
    "serve": cmd_serve,
    "eval": cmd_eval,
    "eval-chat": cmd_eval_chat,
}

if __name__ == "__main__":  # pragma: no cover
    t0 = time.perf_counter()
    raise SystemExit(main())
