"""Serve qa on the seeds: ``python app.py [--host H] [--port P] [--seeds DIR] [--index DIR]``.

Builds or updates the index, then serves the chat UI, the widget and the REST API
on http://127.0.0.1:7860/ (settings also come from QA_* environment variables).
"""

from __future__ import annotations

import argparse
import sys

from qa.cli import configure_logging
from qa.config import Settings
from qa.errors import QAError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default 7860)")
    parser.add_argument("--seeds", dest="seeds_dir", help="folder of source documents")
    parser.add_argument("--index", dest="index_dir", help="folder of the index")
    args = parser.parse_args(argv)
    configure_logging()
    try:
        from qa.serve.server import serve

        serve(Settings.from_env(**vars(args)))
    except QAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
