"""Packaging shim: all metadata lives in setup.cfg.

The one compiled module, the publisher protocols' fast paths, is optional: where it
cannot be built (no C compiler or Python headers) the install goes on and
logio uses its Python equal, with the same results.
"""

import os

from setuptools import Extension, setup

SPEEDUPS = os.path.join("logio", "ingest", "_speedups.c")

setup(
    # Absent only in an image's dependency layer, which installs the
    # metadata before the source.
    ext_modules=(
        [Extension("_logio_speedups", [SPEEDUPS], optional=True)]
        if os.path.exists(SPEEDUPS)
        else []
    ),
)
