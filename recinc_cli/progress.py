"""How long-running steps report progress, without knowing who listens.

The API takes a :class:`Reporter`; the CLI passes one that draws rich progress bars on a
terminal, tests and library users pass nothing (:class:`NullReporter`).
"""

from __future__ import annotations

from typing import Protocol


class Reporter(Protocol):
    """Receives the phases of a long step."""

    def start(self, description: str, total: int | None) -> None:
        """A new phase begins with ``total`` units of work (None if unknown)."""

    def advance(self, n: int = 1, status: str = "") -> None:
        """``n`` more units are done; ``status`` is a short note such as the running loss."""

    def stop(self) -> None:
        """The current phase is over."""


class NullReporter:
    """Reports nothing."""

    def start(self, description: str, total: int | None) -> None:
        pass

    def advance(self, n: int = 1, status: str = "") -> None:
        pass

    def stop(self) -> None:
        pass
