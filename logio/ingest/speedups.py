"""
The optional compiled fast paths (C{_logio_speedups}, built from
C{logio/ingest/_speedups.c} by C{pip install .} where a C compiler is
found).  Each stands in for a Python loop that gives the same results, and
is L{None} where the module was not built, or was built from another
version of the source.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

#: The version of the source this checkout's Python expects.
VERSION = 4

goRecords: Optional[Callable[..., int]] = None
octetFrames: Optional[Callable[..., Any]] = None
flatPack: Optional[Callable[..., Any]] = None
try:
    import _logio_speedups
except ImportError:
    pass
else:
    if _logio_speedups.VERSION == VERSION:
        goRecords = _logio_speedups.goRecords
        octetFrames = _logio_speedups.octetFrames
        flatPack = _logio_speedups.flatPack
