"""The send buffer of a connection: capped for a peer on this host, left to the kernel otherwise."""
import socket
from pathlib import Path

import pytest

from handlers.http_server import fit_send_buffer, peer_on_this_host


@pytest.mark.parametrize("address", [("127.0.0.1", 5000), ("127.9.8.7", 5000), ("::1", 5000, 0, 0),
                                     ("::ffff:127.0.0.1", 5000, 0, 0)])
def test_a_loopback_peer_is_on_this_host(address):
    assert peer_on_this_host(address)


# Data only, never connected to: peer addresses as accept() would give them.
@pytest.mark.parametrize("address", [("10.1.2.3", 5000), ("192.0.2.1", 443), ("2001:db8::1", 5000, 0, 0),
                                     ("fe80::1%eth0", 5000, 0, 2), ("::ffff:192.0.2.1", 5000, 0, 0)])
def test_a_peer_elsewhere_is_not_on_this_host(address):
    assert not peer_on_this_host(address)


@pytest.fixture
def loopback_connection():
    """The server's side of a connection from 127.0.0.1, and the client's address."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        served, address = listener.accept()
        yield served, address
        served.close()
        client.close()


def test_a_connection_from_a_loopback_peer_gets_the_local_send_buffer(loopback_connection):
    served, address = loopback_connection
    fit_send_buffer(served, address, 256 * 1024)
    # Linux caps what it is given at wmem_max and doubles it, for its own bookkeeping.
    cap = int(Path("/proc/sys/net/core/wmem_max").read_text())
    assert served.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == 2 * min(256 * 1024, cap)


def test_a_connection_from_a_peer_elsewhere_keeps_the_kernels_buffer(loopback_connection):
    served, _ = loopback_connection
    before = served.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
    fit_send_buffer(served, ("192.0.2.1", 5000), 256 * 1024)  # data only: the socket stays on loopback
    assert served.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == before


def test_a_local_send_buffer_of_zero_leaves_the_kernels_own(loopback_connection):
    served, address = loopback_connection
    before = served.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
    fit_send_buffer(served, address, 0)
    assert served.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == before
