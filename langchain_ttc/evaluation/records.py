"""Records that survive a kill: JSONL files appended one finished problem at a time and resumed on a rerun.

In: a path, the configuration of the run that writes it, and the problems still to run. Out: the
records already in the file (a rerun of the same configuration skips their problems), and each new
record appended, flushed and fsynced as its problem finishes. ``ttc eval`` (:mod:`.run`) and
``ttc calibrate`` (:mod:`.calibrate`) both write through :class:`RecordsFile` and :func:`run_problems`.

A file is tied to the configuration that wrote it in one of two ways: a first line
``{"config": {...}}`` (``ttc eval``'s results), or a ``"run"`` digest of the configuration in every
record (calibration records, which other tools read line by line as records). A rerun with another
configuration is refused before anything runs.

A process killed while writing leaves a torn last line: reading drops it with a
:class:`RecordsWarning` naming the file and the line (and cuts it off before anything is appended),
so that problem runs again. A damaged line anywhere else is an error naming the file and the line.

Runs stop when asked: on ``KeyboardInterrupt`` (SIGINT) no new problem starts, the problems in flight
stop at their next graph step (:func:`invoke_until`; a few seconds are waited for them at most, as a
step can be one long model call), every finished one is kept, and :class:`RunInterrupted` says how
many are done and where they are.

Example:
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "run.jsonl"
    >>> records = RecordsFile(path, {"seed": 0})
    >>> run_problems(lambda item, stop: {"id": item}, ["a", "b"], records, total=2)
    [{'id': 'a'}, {'id': 'b'}]
    >>> _ = path.open("a").write('{"id": "c", "pre')  # a kill while writing a line
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     [r["id"] for r in RecordsFile(path, {"seed": 0}).read()]
    ['a', 'b']
    >>> str(caught[0].message)  # doctest: +ELLIPSIS
    '...run.jsonl:4: dropped an incomplete last line (a run was stopped while writing it); its problem runs again.'

"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, TextIO, TypeVar

T = TypeVar("T")


class RecordsWarning(UserWarning):
    """A records file was damaged in a way that loses nothing finished (a torn last line was dropped)."""


class RunInterrupted(KeyboardInterrupt):
    """A run stopped when asked (SIGINT) after saving every finished problem.

    Attributes:
        done: Problems whose records are in the file.
        total: Problems in the run.
        path: The records file (``None``: the run kept its records in memory only).

    """

    def __init__(self, done: int, total: int, path: Path | None) -> None:
        kept = f"results kept in {path}" if path is not None else "results not saved (no records file)"
        super().__init__(f"{done} of {total} problems done, {kept}")
        self.done, self.total, self.path = done, total, path


class Stopped(Exception):
    """A problem stopped before it finished because its run was interrupted (it runs again on resume)."""


def invoke_until(graph: Any, inputs: Any, stop: threading.Event | None) -> dict[str, Any]:
    """``graph.invoke(inputs)``, stopping between graph steps once ``stop`` is set.

    Raises:
        Stopped: If ``stop`` was set before the graph finished.

    """
    if stop is None:
        return dict(graph.invoke(inputs))
    output: dict[str, Any] = {}
    for chunk in graph.stream(inputs, stream_mode="values"):
        if stop.is_set():
            raise Stopped
        output = chunk
    return output


def config_digest(config: dict[str, Any]) -> str:
    """A short digest of a JSON-serialisable configuration (what ties a calibration record to its run).

    Example:
        >>> config_digest({"b": 1, "a": [2]}) == config_digest({"a": [2], "b": 1})
        True

    """
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def read_jsonl(path: Path, *, repair: bool = False) -> list[dict[str, Any]]:
    """Every JSON object line of ``path``; a torn last line is dropped with a :class:`RecordsWarning`.

    Args:
        path: The file (missing: no lines).
        repair: Also cut the torn line off the file (and end its last line), so appending is safe.

    Raises:
        ValueError: If a line other than the last is not a JSON object (naming the file and the line).

    """
    if not path.exists():
        return []
    data = path.read_bytes()
    rows: list[dict[str, Any]] = []
    offset = 0
    lines = data.split(b"\n")
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    for number, line in enumerate(lines, start=1):
        start, offset = offset, offset + len(line) + 1
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            message = error.msg if isinstance(error, json.JSONDecodeError) else "not UTF-8"
            if number - 1 != last:
                raise ValueError(
                    f"{path}:{number} is not valid JSON ({message}); the file is damaged: delete that line (its "
                    "problem runs again) or the file (to start over)."
                ) from None
            warnings.warn(
                f"{path}:{number}: dropped an incomplete last line (a run was stopped while writing it); its "
                "problem runs again.",
                RecordsWarning,
                stacklevel=2,
            )
            if repair:
                os.truncate(path, start)
            break
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{number} is {type(row).__name__}, not a JSON object; the file is damaged.")
        rows.append(row)
    else:
        if repair and data and not data.endswith(b"\n"):  # a complete last line cut before its newline
            with path.open("ab") as file:
                file.write(b"\n")
    return rows


class RecordsFile:
    """An append-only JSONL file of one run's records, tied to the run's configuration.

    Args:
        path: The file.
        config: The run's configuration (JSON data). With ``header``, the file's first line is
            ``{"config": config}``; without, every record carries ``"run": config_digest(config)``.
        option: What to call the file in messages (``--output``, ``--records``).
        header: Which of the two ways ties the file to ``config``.

    """

    def __init__(self, path: Path, config: dict[str, Any], *, option: str = "--output", header: bool = True) -> None:
        self.path, self.config, self.option, self.header = Path(path), config, option, header
        self.digest = config_digest(config)
        self.lock = threading.RLock()

    def _other(self, found: Any) -> ValueError:
        return ValueError(
            f"{self.option}={str(self.path)!r} holds results of another configuration ({found}); pass another "
            f"{self.option}, or delete the file to start over."
        )

    def read(self) -> list[dict[str, Any]]:
        """The records already in the file (a torn last line dropped and cut off).

        Raises:
            ValueError: If the file holds results of another configuration, or is damaged.

        """
        rows = read_jsonl(self.path, repair=True)
        if not rows:
            return []
        if self.header:
            if rows[0].get("config") != self.config:
                raise self._other(rows[0].get("config"))
            return rows[1:]
        for row in rows:
            if row.get("run") != self.digest:
                found = "a record without a run digest" if "run" not in row else f"run {row['run']}"
                raise self._other(f"{found}; this run is {self.digest}")
        return rows

    @contextmanager
    def appending(self) -> Iterator[Callable[[dict[str, Any]], None]]:
        """Open the file for appending; yields ``append(record)``, which writes, flushes and fsyncs one record."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists() or self.path.stat().st_size == 0
        with self.path.open("a") as file:
            if new and self.header:
                self._write(file, {"config": self.config})

            def append(record: dict[str, Any]) -> None:
                with self.lock:
                    self._write(file, record if self.header else {**record, "run": self.digest})

            yield append

    @staticmethod
    def _write(file: TextIO, row: dict[str, Any]) -> None:
        file.write(json.dumps(row) + "\n")
        file.flush()
        os.fsync(file.fileno())

    def rewrite(self, records: Sequence[dict[str, Any]]) -> None:
        """Replace the file's records with ``records`` at once (a new file renamed over the old one)."""
        rows = [{"config": self.config}, *records] if self.header else [{**r, "run": self.digest} for r in records]
        temporary = self.path.with_name(self.path.name + ".tmp")
        with temporary.open("w") as file:
            file.write("".join(json.dumps(row) + "\n" for row in rows))
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self.path)


def _in_order_as_completed(futures: list[Future[dict[str, Any]]]) -> Iterator[Future[dict[str, Any]]]:
    """The futures as they finish; those found finished together in the order they were submitted."""
    pending = list(futures)
    while pending:
        done, _ = wait(pending, return_when=FIRST_COMPLETED)
        yield from (f for f in pending if f in done)
        pending = [f for f in pending if f not in done]


@contextmanager
def _sigint_deferred() -> Iterator[list[int]]:
    """In the main thread, note a SIGINT inside the block instead of acting on it (the list fills)."""
    deferred: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield deferred
        return
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: deferred.append(signum))
    try:
        yield deferred
    finally:
        signal.signal(signal.SIGINT, previous)


def run_problems(
    work: Callable[[T, threading.Event], dict[str, Any]],
    todo: Sequence[T],
    records: RecordsFile | None,
    *,
    total: int,
    done: int = 0,
    concurrency: int = 1,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    grace_s: float = 5.0,
) -> list[dict[str, Any]]:
    """Run ``work(item, stop)`` on every item (``concurrency`` at a time), appending each record as it finishes.

    A failing item stops new ones from starting; the items in flight finish and are saved, then its
    error is raised with a note saying how many problems are saved and how to resume. On
    ``KeyboardInterrupt`` ``stop`` is set (``work`` stops at its next step, see :func:`invoke_until`),
    no new item starts, and :class:`RunInterrupted` is raised once the items in flight have stopped, or
    after ``grace_s`` seconds (a step can be one long model call: the items still in flight then run
    again on resume); a second ``KeyboardInterrupt`` stops waiting for them at once.

    Args:
        work: Runs one item; returns its record, or raises :class:`Stopped` once ``stop`` is set.
        todo: The items still to run.
        records: Where the records go (``None``: nowhere, they are only returned).
        total: Problems in the whole run (for messages).
        done: Problems already in the file.
        concurrency: Items in flight at once.
        on_record: Called with each new record once it is saved (a progress bar).
        grace_s: How long an interrupted run waits for the items in flight to stop.

    Returns:
        The new records, in the order they finished.

    """
    stop, abandoned, collected = threading.Event(), threading.Event(), threading.Event()
    new: list[dict[str, Any]] = []
    failures: list[BaseException] = []
    interrupted_at: float | None = None
    pool = ThreadPoolExecutor(max_workers=max(1, concurrency))

    lock = records.lock if records is not None else threading.RLock()

    def cancel() -> None:
        for future in futures:
            future.cancel()

    def leave() -> None:
        with lock:  # once no record is being written: nothing more is, and the file may close
            abandoned.set()

    def collect(append: Callable[[dict[str, Any]], None]) -> None:
        try:
            collect_all(append)
        finally:
            collected.set()

    def collect_all(append: Callable[[dict[str, Any]], None]) -> None:
        # Not the main thread: a KeyboardInterrupt never lands between writing a record and counting it.
        for future in _in_order_as_completed(futures):
            if future.cancelled():
                continue
            try:
                record = future.result()
            except Stopped:
                continue
            except Exception as error:  # keep every finished problem; stop starting new ones
                failures.append(error)
                cancel()
                continue
            with lock:
                if abandoned.is_set():  # the run was left (a second interrupt, the grace period over)
                    return
                append(record)
                new.append(record)
            if on_record is not None:
                on_record(record)

    try:
        with records.appending() if records is not None else nullcontext(lambda _: None) as append:
            with _sigint_deferred() as deferred:  # every item submitted and collected, or none
                futures = [pool.submit(work, item, stop) for item in todo]
                collector = threading.Thread(target=collect, args=(append,), name="ttc-records", daemon=True)
                collector.start()
            while not collected.is_set():  # (an interrupted Thread.join can mark a running thread stopped)
                try:
                    if interrupted_at is not None and time.monotonic() > interrupted_at + grace_s:
                        break  # the problems still in flight are left to stop on their own; they run again on resume
                    if deferred:  # a SIGINT came while setting up: deliver it now, to whoever handles SIGINT
                        deferred.clear()
                        signal.raise_signal(signal.SIGINT)
                    collected.wait(0.1)
                except KeyboardInterrupt:
                    if interrupted_at is not None:  # a second one: stop waiting for the problems in flight
                        leave()
                        raise
                    interrupted_at = time.monotonic()
                    stop.set()
                    cancel()
            leave()
    finally:
        stop.set()  # nothing still running goes on past its next step
        abandoned.set()
        pool.shutdown(wait=False, cancel_futures=True)
    path = None if records is None else records.path
    if interrupted_at is not None:
        raise RunInterrupted(done + len(new), total, path)
    if failures:
        where = f"saved in {str(path)!r}; run the same command again to resume from there" if path else "kept"
        failures[0].add_note(f"{done + len(new)} of {total} problems are finished and {where}.")
        raise failures[0]
    return new
