"""Errors the CLI turns into one line on stderr and exit code 2."""

from __future__ import annotations

import os


class EvidenceError(Exception):
    """Bad input: says what and where (``file:line``)."""

    def __init__(self, message: str, path: str | os.PathLike[str] | None = None, line: int | None = None):
        self.message = message
        self.path = str(path) if path is not None else None
        self.line = line
        super().__init__(str(self))

    @property
    def where(self) -> str | None:
        if self.path is None:
            return None
        return f"{self.path}:{self.line}" if self.line is not None else self.path

    def __str__(self) -> str:
        w = self.where
        return f"{w}: {self.message}" if w else self.message
