"""Progress of a long computation: ``progress(done, total)`` called as parts of it finish.

The functions that take one (``service.analysis.analyse``, ``service.graph.analysis.analyse_graph``,
``service.survey.survey``) call it with the count of parts done so far (1, 2, …, total), in order, possibly from
the threads of an executor (one call at a time); what a part is, is stated by each function. It never changes a
number of the result.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

Progress = Callable[[int, int], None]
"""``progress(done, total)``: ``done`` of ``total`` parts finished."""


class Counter:
    """Counts parts done and tells ``progress`` after each, one call at a time (a lock: executors' threads)."""

    def __init__(self, progress: Progress | None, total: int) -> None:
        self.progress = progress
        self.total = total
        self.done = 0
        self._lock = threading.Lock()

    def step(self, parts: int = 1) -> None:
        """``parts`` more are done (none: nothing is told)."""
        if self.progress is None or parts <= 0:
            return
        with self._lock:
            self.done = min(self.done + parts, self.total)
            self.progress(self.done, self.total)
