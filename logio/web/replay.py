# -*- test-case-name: tests.test_web -*-
"""
What a new stream is sent before its live records: the records history
holds for its C{tail}, C{last_event_id} or time range.

The records held in memory are replayed at once.  Older ones, which only a
store on disk holds, are read a batch at a time in a cooperative task, so a
long read never holds the reactor; meanwhile new records keep coming, and
once the read is done the stream is sent those too (from memory), and only
then does it go live, with no gap and no duplicate.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Optional

from twisted.internet.defer import Deferred
from twisted.internet.task import CooperativeTask, Cooperator, TaskDone
from twisted.web.server import Request

from logio.filters import Filters
from logio.interfaces import IBroker, IFormat, Run
from logio.timerange import TimeRange
from logio.web.stream import Stream

#: How many records of a replay are encoded into one piece of output.
REPLAY_PIECE = 256
#: A C{tail} that takes every record held.
ALL = 1 << 62


class Replayer:
    """
    Replay history to new streams: see the module docstring.

    @ivar reading: How many streams are reading from disk now.
    """

    def __init__(self, broker: IBroker, cooperator: Cooperator) -> None:
        self._broker = broker
        self._cooperator = cooperator
        self.reading = 0

    def replay(
        self,
        request: Request,
        stream: Stream,
        format: IFormat,
        filters: Filters,
        tail: int,
        after: Optional[int],
        window: Optional[TimeRange],
        stale: Optional[str],
        done: Callable[[], None],
    ) -> None:
        """
        Send C{stream} what history holds for it, then call C{done}: at
        once, unless older records must be read from disk first (and also
        if the client goes away meanwhile).
        """
        history = self._broker.history
        if stale is not None:
            stream.notify(
                f"event id {stale!r} is from an earlier run of this server: "
                "the records after it that the earlier run held are gone; "
                "replaying the records of this run held in memory"
            )
            # Never a read from disk: a store may hold far more than a
            # client that resumes expects.
            after = history.oldest - 1
        if not (tail or after is not None or window is not None):
            done()
            return
        # A range without a tail is replayed whole.
        tail = tail or (ALL if window is not None else 0)
        boundary = history.next
        held = self._broker.replay(filters, tail, after, window)
        matched = sum(len(run.records) for run in held.runs)
        need = None if after is not None or tail == ALL else tail - matched
        deeper = history.deeper(filters, need, after, window, history.oldest)
        if deeper is None:
            if held.missed:
                stream.notify(
                    f"{held.missed} records after event id {self._broker.start}-{after} are no longer "
                    "in history",
                    held.missed,
                )
            self._send(stream, format, held.runs)
            done()
            return
        self.reading += 1

        def read() -> Iterator[Optional[Deferred[Any]]]:
            for run in deeper:
                if isinstance(run, Deferred):
                    # The cooperator waits for it.
                    yield run
                    continue
                if run is not None:
                    self._send(stream, format, [run])
                yield None
            self._send(stream, format, held.runs)
            # What came while the disk was read, from memory.
            caught = self._broker.replay(filters, ALL, boundary - 1, window)
            if caught.missed:
                stream.notify(
                    f"{caught.missed} records that came during the replay are no longer in history",
                    caught.missed,
                )
            self._send(stream, format, caught.runs)

        task = self._cooperator.cooperate(read())

        def finished(result: object) -> None:
            # Also when the client went away: done then releases the stream.
            self.reading -= 1
            done()

        task.whenDone().addBoth(finished)
        request.notifyFinish().addBoth(lambda result: _stop(task))

    def _send(self, stream: Stream, format: IFormat, runs: list[Run]) -> None:
        """
        Encode and queue C{runs} for C{stream}.
        """
        lines = 0
        for run in runs:
            encode = format.encoder(run.topic)
            # In pieces, so the transport pauses the stream after the first
            # few and the queue's bounds apply to the rest.
            for start in range(0, len(run.records), REPLAY_PIECE):
                end = start + REPLAY_PIECE
                for segment in encode(run.records[start:end], run.seqs[start:end]):
                    stream.deliver(segment)
                    lines += segment.lines
        self._broker.stats.linesOut[format.name] += lines


def _stop(task: CooperativeTask) -> None:
    """
    Stop a replay's task whose client went away, if it is still running.
    """
    try:
        task.stop()
    except TaskDone:
        pass
