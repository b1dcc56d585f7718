"""
Tokens files, as C{--auth} and L{logio.auth.Tokens} read them.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase


def tokensFile(testCase: SynchronousTestCase, text: str) -> str:
    """
    Write C{text} to a new tokens file; return its path.
    """
    path = testCase.mktemp()
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path
