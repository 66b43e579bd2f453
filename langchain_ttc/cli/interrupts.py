"""Ctrl-C for the long commands (``ttc solve``, ``ttc eval``, ``ttc calibrate``): stop soon, or at once.

In: SIGINT while a command runs. Out: the first one raises ``KeyboardInterrupt`` in the main thread
(the command stops its problems at their next step, waiting a few seconds at most, keeps what is
finished, and prints one line: :mod:`langchain_ttc.evaluation.records`); a second one prints one
line and ends the process at once (exit code 130), without waiting for work in flight: every
finished record is already on disk (appended and fsynced as each problem finishes). The main thread
only waits (:func:`in_background`), so a model call in progress never delays either.

Example::

    with interrupts("eval", kept=lambda: "results kept in ttc_eval/arith.jsonl"):
        run()  # Ctrl-C once: KeyboardInterrupt here; twice: the process exits with 130
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TypeVar

T = TypeVar("T")

EXIT_INTERRUPTED = 130
"""The exit code of a command stopped by SIGINT (128 + the signal's number, as shells report it)."""


@contextmanager
def interrupts(command: str, *, kept: Callable[[], str | None] = lambda: None) -> Iterator[None]:
    """Handle SIGINT inside the block: the first raises ``KeyboardInterrupt``, the second exits at once.

    Outside the main thread (where signal handlers cannot be set) the block runs unchanged.

    Args:
        command: The subcommand, for the message (``eval``).
        kept: What the one-line message of a second SIGINT says is kept (``None``: nothing).

    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    count = 0

    def handle(signum: int, frame: FrameType | None) -> None:
        nonlocal count
        count += 1
        if count == 1:
            raise KeyboardInterrupt
        where = kept()
        print(f"\nttc {command}: interrupted again: exiting now" + (f"; {where}" if where else ""), file=sys.stderr)
        exit_now()

    previous = signal.signal(signal.SIGINT, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def in_background(work: Callable[[], T]) -> T:
    """``work()`` run in a daemon thread while the main thread waits, so Ctrl-C stops the wait at once.

    A model call cannot be interrupted; on ``KeyboardInterrupt`` the main thread leaves it running
    (the process then exits without waiting for it). ``work``'s exception is raised here.
    """
    outcome: dict[str, T] = {}
    errors: list[BaseException] = []

    finished = threading.Event()  # waited on, not Thread.join: an interrupted join can mark the thread stopped

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as error:  # handed to the main thread
            errors.append(error)
        finally:
            finished.set()

    threading.Thread(target=run, name="ttc-work", daemon=True).start()
    while not finished.wait(0.1):
        pass
    if errors:
        raise errors[0]
    return outcome["value"]


def exit_now(code: int = EXIT_INTERRUPTED) -> None:
    """End the process with ``code`` at once, not waiting for threads still in a model call (output flushed)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
