"""The one error type users see: it names the file, the record and the problem."""

from __future__ import annotations


class SafealignError(Exception):
    """A user-facing error; the CLI prints its message on one line and exits non-zero."""


class DataError(SafealignError):
    """Bad input data. The message reads `FILE:RECORD: problem`."""

    def __init__(self, path: object, record: object | None, problem: str):
        where = f"{path}" if record is None else f"{path}:{record}"
        super().__init__(f"{where}: {problem}")
        self.path, self.record, self.problem = path, record, problem
