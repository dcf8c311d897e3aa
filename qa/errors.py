"""Errors the library raises. Every message says what went wrong and how to fix it.

The shells (CLI, API, UI) translate these into exit codes, HTTP statuses and
messages; a user never sees a stack trace for their own mistake.
"""

from __future__ import annotations


class QAError(Exception):
    """Base class of every error ``qa`` raises on purpose."""

    exit_code = 1
    http_status = 500


class ConfigError(QAError):
    """A setting has an invalid value."""

    exit_code = 2
    http_status = 400


class InputError(QAError):
    """A question, history or other input is invalid (empty, too long, wrong type)."""

    exit_code = 2
    http_status = 400


class SourceError(QAError):
    """The seeds folder is missing, empty or unreadable."""

    exit_code = 3
    http_status = 500


class IndexMissingError(QAError):
    """No index has been built yet in the index folder."""

    exit_code = 4
    http_status = 503


class IndexCorruptError(QAError):
    """An index file is truncated, damaged or not a qa index."""

    exit_code = 4
    http_status = 503


class IndexMismatchError(QAError):
    """The index was built with another model or format version."""

    exit_code = 4
    http_status = 503


class BuildLockedError(QAError):
    """Another build holds the index lock."""

    exit_code = 5
    http_status = 409


class ModelError(QAError):
    """A model (embedder or reader) could not be loaded."""

    exit_code = 6
    http_status = 500


class ReloadError(QAError):
    """A reload was refused (no usable seeds): the current index stays live."""

    exit_code = 3
    http_status = 409
