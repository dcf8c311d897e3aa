"""qa: offline extractive question answering with exact citations.

>>> from qa import QA
>>> qa = QA.build("seeds", "index")
>>> answer = qa.ask("Which missile system did Biden authorize?")
>>> answer.text, answer.citations[0].doc_id
"""

from __future__ import annotations

from qa.config import Settings
from qa.errors import QAError
from qa.pipeline import QA
from qa.types import Answer, Chunk, Citation, Document, Hit

__all__ = ["QA", "Answer", "Chunk", "Citation", "Document", "Hit", "QAError", "Settings"]
__version__ = "0.1.0"
