"""The inventory's two errors, in a module of their own so every inventory module can raise them without a loop."""

from __future__ import annotations

import os


class InventoryError(Exception):
    """A malformed inventory.  The message names the file, the line (when known) and the key."""

    def __init__(self, path: str | os.PathLike, message: str, line: int | None = None, key: str | None = None):
        self.path = str(path)
        self.line = line
        self.key = key
        where = self.path if line is None else f"{self.path}:{line}"
        what = f" [{key}]" if key else ""
        super().__init__(f"{where}:{what} {message}")


class PatternError(ValueError):
    """A ``--hosts`` pattern that selects nothing or cannot be read."""
