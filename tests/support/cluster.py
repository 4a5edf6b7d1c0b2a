"""The cluster harness (runtime/cluster.py) as the tests use it: nodes on the session's SecantusDB (a database of
their own), behind nginx, every process tied to the test run.

``REGISTRY_UNDER_TEST=cluster`` makes the session's ``registry`` fixture such a cluster of three nodes, so any
module of the suite runs through the balancer (test_cluster.py does that for the /v2/ behaviour modules):
``REGISTRY_UNDER_TEST=cluster pytest tests/test_manifests.py``.
"""
import os
import secrets

from runtime.balancer import balancer_blocks
from runtime.cluster import Cluster

UNDER_TEST_ENV = "REGISTRY_UNDER_TEST"


def cluster_under_test():
    return os.environ.get(UNDER_TEST_ENV) == "cluster"


class TestCluster(Cluster):
    """A Cluster that also stands where a tests.support.processes.RegistryServer does (``url``, ``host``, ``port``,
    ``admin_password``, ``db_name``, ``log_text()``). Its balancer passes on the X-Real-Ip a test client sends (a
    made-up address of its own, so deliberate failures at the token endpoint count against no one else): the
    nodes trust it as they would the balancer's."""

    __test__ = False  # not a test class, whatever its name

    def __init__(self, directory, mongo_uri, nodes=3, **options):
        options.setdefault("mongo_db", f"cyp_test_{secrets.token_hex(4)}")
        super().__init__(directory, nodes=nodes, mongo_uri=mongo_uri, **options)
        self.db_name = self.mongo_db

    def _balancer_blocks(self):
        return balancer_blocks(self.host, [node.host for node in self.nodes], self.host_header,
                               client_address="$http_x_real_ip")

    @property
    def log_path(self):
        return self.directory

    def log_text(self):
        """Every node's log, one after the other."""
        return "".join(node.process.log_path.read_text(errors="replace") for node in self.nodes
                       if node.process.log_path.exists())
