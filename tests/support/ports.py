"""
Where to listen: ports nothing listens on right now, and UNIX socket paths
short enough for C{AF_UNIX}.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile

from twisted.trial.unittest import SynchronousTestCase


def freePort() -> int:
    """
    A TCP port on 127.0.0.1 that nothing listens on right now.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def freeUDPPort() -> int:
    """
    A UDP port on 127.0.0.1 that nothing is bound to right now.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    sock.close()
    return port


def socketPath(testCase: SynchronousTestCase, name: str) -> str:
    """
    A path for a UNIX socket named C{name} in a fresh short-lived directory
    under the system temp directory, removed when the test ends.

    Trial's own temp directory can sit too deep for C{AF_UNIX}, whose paths
    are limited to 107 bytes on Linux (CI checks out under a longer path).
    """
    directory = tempfile.mkdtemp(prefix="logio-")
    testCase.addCleanup(shutil.rmtree, directory, ignore_errors=True)
    return os.path.join(directory, name)
