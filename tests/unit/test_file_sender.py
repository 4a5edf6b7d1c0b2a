"""The send buffer of kernel-sent blob downloads: capped for a peer on this host, left to the kernel otherwise."""
import socket

import pytest

from handlers.file_sender import fit_send_buffer, peer_on_this_host


@pytest.mark.parametrize("address", [("127.0.0.1", 5000), ("127.9.8.7", 5000), ("::1", 5000, 0, 0),
                                     ("::ffff:127.0.0.1", 5000, 0, 0)])
def test_a_loopback_peer_is_on_this_host(address):
    assert peer_on_this_host(address)


@pytest.mark.parametrize("address", [("10.1.2.3", 5000), ("192.0.2.1", 443), ("2001:db8::1", 5000, 0, 0),
                                     ("fe80::1%eth0", 5000, 0, 2), ("::ffff:192.0.2.1", 5000, 0, 0)])
def test_a_peer_elsewhere_is_not_on_this_host(address):
    assert not peer_on_this_host(address)


@pytest.fixture
def loopback_connection():
    """The server's side of a connection from 127.0.0.1."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        served, _ = listener.accept()
        yield served
        served.close()
        client.close()


def test_a_download_to_a_loopback_peer_gets_the_local_send_buffer(loopback_connection):
    fit_send_buffer(loopback_connection, 256 * 1024)
    # Linux doubles what it is given, for its own bookkeeping.
    assert loopback_connection.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == 2 * 256 * 1024


def test_a_local_send_buffer_of_zero_leaves_the_kernels_own(loopback_connection):
    before = loopback_connection.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
    fit_send_buffer(loopback_connection, 0)
    assert loopback_connection.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == before
