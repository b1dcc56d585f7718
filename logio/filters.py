# -*- test-case-name: tests.test_filters -*-
"""
The filter language of a subscription: an unanchored RE2 search per topic
field (C{app}, C{proc}, C{host}) and per record (C{log}), and the least
severe level kept (C{level}).
"""

from __future__ import annotations

import re
from functools import lru_cache, partial
from typing import Callable, Iterable, Mapping, Optional, Sequence

import re2
from attrs import field, frozen
from zope.interface import implementer

from logio.interfaces import IFilters, IGrant
from logio.levels import parseLevel, ranks
from logio.timerange import TimeRange
from logio.topic import Record, Topic

#: An unanchored search in UTF-8 text: a match (true) or L{None}.
Search = Callable[[bytes], object]

FILTER_FIELDS = ("app", "proc", "host", "log")

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False
# RE2 is linear in the text, but its constant grows with a counted
# repetition (a[ab]{999}c) and so does its automaton's memory: large counts
# are refused, and each pattern's memory is capped.
_OPTIONS.max_mem = 1 << 20
MAX_REPEAT = 100
_REPEAT = re.compile(r"\{(\d+)(?:,(\d*))?\}")
#: The longest pattern accepted, in characters.
MAX_PATTERN = 1024
#: The largest RE2 program accepted.  A search costs up to about the
#: program's size in steps per byte of text (when the DFA gives up, as it
#: does for patterns like C{[ab]*a[ab]{50}c}), so this bounds the cost of
#: every pattern per byte; nested repetitions such as C{(.{1,100}){10}}
#: make programs of thousands of instructions.
MAX_PROGRAM = 500


class BadFilter(ValueError):
    """
    A filter parameter is not a valid RE2 regular expression.
    """

    def __init__(self, name: str, pattern: str, reason: str) -> None:
        super().__init__(f"bad regular expression for {name!r}: {pattern!r}: {reason}")
        self.name = name


#: Characters with a meaning in RE2 syntax; a pattern without any of them is
#: a plain substring search.
_SPECIAL = frozenset("\\.^$|?*+()[]{}")


@frozen
class Pattern:
    """
    One compiled filter pattern.  Patterns are equal when their text is, so
    subscribers that ask for the same C{log} pattern share its work however
    their searches were compiled.

    @ivar text: The pattern as the subscriber wrote it.
    @ivar search: The unanchored search it compiles to.
    """

    text: str
    search: Search = field(eq=False, repr=False)


@lru_cache(maxsize=128)
def compileFilter(name: str, pattern: str) -> Optional[Pattern]:
    """
    Compile one filter pattern into an unanchored search, or L{None} if the
    pattern is empty (which matches everything).  The cache only saves
    compiling a popular pattern again.

    @raise BadFilter: If C{pattern} is not valid RE2 syntax.
    """
    if not pattern:
        return None
    if len(pattern) > MAX_PATTERN:
        raise BadFilter(
            name, pattern[:40] + "...", f"patterns are at most {MAX_PATTERN} characters"
        )
    if _SPECIAL.isdisjoint(pattern):
        return Pattern(pattern, partial(_contains, pattern.encode("utf-8", "surrogatepass")))
    for low, high in _REPEAT.findall(pattern):
        if max(int(low), int(high or 0)) > MAX_REPEAT:
            raise BadFilter(
                name, pattern, f"counted repetitions above {{{MAX_REPEAT}}} make matching too slow"
            )
    try:
        # A bytes pattern, searched in UTF-8 text: RE2 matches the same
        # characters (its encoding is UTF-8 either way), and a search on
        # bytes skips the conversion of a str at every call.  A lone
        # surrogate keeps its own bytes, which no UTF-8 text holds: it
        # matches nothing (replaced by "?", it would be a quantifier).
        compiled = re2.compile(pattern.encode("utf-8", "surrogatepass"), _OPTIONS)
    except re2.error as e:
        reason = e.args[0] if e.args else "invalid pattern"
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise BadFilter(name, pattern, str(reason)) from None
    if compiled.programsize > MAX_PROGRAM:
        raise BadFilter(
            name,
            pattern,
            f"too costly to match (an RE2 program of {compiled.programsize} instructions, "
            f"at most {MAX_PROGRAM}: nested or large repetitions)",
        )
    return Pattern(pattern, compiled.search)


def selected(
    filters: IFilters,
    window: Optional[TimeRange],
    records: Sequence[Record],
    indices: Iterable[int],
) -> list[int]:
    """
    The indices (of C{indices}) of the C{records} that C{filters} and
    C{window} take, their topic aside: in the time range, at the level or
    worse, matching the C{log} pattern.  For replays, which take records
    from history one by one.
    """
    chosen = list(indices)
    if window is not None:
        chosen = [i for i in chosen if records[i][0] in window]
    if filters.level is not None and chosen:
        levels = ranks([records[i] for i in chosen])
        chosen = [i for i, rank in zip(chosen, levels, strict=True) if rank >= filters.level]
    if filters.log is not None:
        search = filters.log.search
        chosen = [i for i in chosen if search(records[i][1].encode("utf-8", "replace"))]
    return chosen


def _contains(literal: bytes, text: bytes) -> Optional[bool]:
    """
    The search for a pattern without special characters: as RE2 would
    answer, but without its per-call cost.
    """
    return True if literal in text else None


@implementer(IFilters)
@frozen
class Filters:
    """
    What one subscriber asked for: a pattern per field, or L{None} for a
    field that matches everything; the least severe level it keeps, or
    L{None}; and the apps its token allows, whatever it asked for.

    @ivar access: The subscriber's grant on a server with C{--auth}, or
        L{None} (every app).
    """

    app: Optional[Pattern] = None
    proc: Optional[Pattern] = None
    host: Optional[Pattern] = None
    log: Optional[Pattern] = None
    level: Optional[int] = None
    access: Optional[IGrant] = None

    @classmethod
    def fromQuery(cls, query: Mapping[str, str], access: Optional[IGrant] = None) -> Filters:
        """
        Build filters from query parameters already reduced to one string
        each, for a subscriber with the grant C{access}.

        @raise BadFilter: If a pattern does not compile.
        @raise ValueError: If C{level} names no level.
        """
        patterns = {name: compileFilter(name, query.get(name, "")) for name in FILTER_FIELDS}
        level = query.get("level")
        return cls(**patterns, level=parseLevel(level) if level else None, access=access)

    def exactApp(self) -> Optional[str]:
        text = self.app.text if self.app is not None else ""
        inner = text[1:-1]
        if len(text) > 2 and text[0] == "^" and text[-1] == "$" and _SPECIAL.isdisjoint(inner):
            return inner
        return None

    def matchesTopic(self, topic: Topic) -> bool:
        """
        Whether records from C{topic} can reach this subscriber (the C{log}
        filter is applied per record, not here).
        """
        if self.access is not None and not self.access.allows(topic.app):
            return False
        return all(
            pattern is None or pattern.search(value.encode("utf-8", "replace")) is not None
            for pattern, value in (
                (self.app, topic.app),
                (self.proc, topic.proc),
                (self.host, topic.host),
            )
        )
