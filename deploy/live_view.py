"""The terminal view of a running job: live counts while it runs, a summary when it ends."""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.console import Console
from rich.live import Live
from rich.table import Table

Counts = Callable[[], dict[str, str | int | float]]


def counts_table(title: str, counts: dict[str, str | int | float]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold cyan")
    table.add_column(justify="right")
    for name, value in counts.items():
        table.add_row(name, f"{value:,.0f}" if isinstance(value, int | float) else str(value))
    return table


class LiveCounts:
    """Refresh a table of counts a few times a second; plain lines when stdout is not a terminal."""

    def __init__(self, title: str, counts: Counts, console: Console | None = None) -> None:
        self.title = title
        self.counts = counts
        self.console = console or Console(stderr=True)
        self._live: Live | None = None
        self._last_plain = 0.0

    def __enter__(self) -> LiveCounts:
        if self.console.is_terminal:
            self._live = Live(counts_table(self.title, self.counts()), console=self.console,
                              refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def refresh(self) -> None:
        if self._live is not None:
            self._live.update(counts_table(self.title, self.counts()))
        elif time.monotonic() - self._last_plain >= 5:
            self._last_plain = time.monotonic()
            self.console.print(" ".join(f"{k}={v}" for k, v in self.counts().items()))

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.update(counts_table(self.title, self.counts()))
            self._live.__exit__(None, None, None)
