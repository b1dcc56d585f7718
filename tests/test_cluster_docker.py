"""
The Docker image and the compose file of a cluster cannot be built or run
here: check what they say.
"""

from __future__ import annotations

import configparser
import os

from twisted.trial.unittest import SynchronousTestCase

from tests.support.processes import ROOT


def read(name: str) -> str:
    """
    The text of C{name} in the checkout.
    """
    with open(os.path.join(ROOT, name), encoding="utf-8") as f:
        return f.read()


class DockerfileTests(SynchronousTestCase):
    """
    The image can be built with every package, and runs C{--cluster}.
    """

    def setUp(self) -> None:
        text = read("Dockerfile")
        #: The layer that installs the dependencies, before the source.
        self.dependencies = text[: text.index("COPY . .")]

    def test_everyPackage(self) -> None:
        """
        The dependency layer makes an empty module of every package that
        setup.cfg lists: setuptools refuses a listed package that is not
        there.
        """
        setup = configparser.ConfigParser()
        setup.read(os.path.join(ROOT, "setup.cfg"))
        packages = setup["options"]["packages"].split()
        self.assertIn("logio.cluster", packages)
        for package in packages:
            directory = package.replace(".", "/")
            self.assertIn(directory + " ", self.dependencies)
            if package != "twisted.plugins":
                self.assertIn(directory + "/__init__.py", self.dependencies)

    def test_clusterExtra(self) -> None:
        """
        The dependency layer installs the cluster extra (hiredis).
        """
        self.assertIn("pip install --no-cache-dir .[cluster]", self.dependencies)


class ComposeTests(SynchronousTestCase):
    """
    C{docker-compose.cluster.yml}: Redis and three nodes of the image.
    """

    def setUp(self) -> None:
        self.text = read("docker-compose.cluster.yml")

    def test_redis(self) -> None:
        """
        Redis 7, without persistence.
        """
        self.assertIn("image: redis:7", self.text)
        self.assertIn('"--save", ""', self.text)

    def test_nodes(self) -> None:
        """
        Three nodes built from the Dockerfile, each a node of that Redis,
        each on ports of its own on this machine's loopback.
        """
        self.assertIn("build: .", self.text)
        self.assertIn('"--cluster", "redis://redis:6379/0"', self.text)
        for node, ports in [(1, (7701, 7702)), (2, (7711, 7712)), (3, (7721, 7722))]:
            self.assertEqual(self.text.count(f"  node{node}:\n    <<: *node\n"), 1)
            self.assertIn(f'"127.0.0.1:{ports[0]}:7701"', self.text)
            self.assertIn(f'"127.0.0.1:{ports[1]}:7702"', self.text)
