"""Keep-alive connections: a client may send its next request on the connection an answer came on, unless the
answer said ``Connection: close``."""
import http.client
import time

import pytest

CHALLENGED_WITHOUT_A_BODY = [
    ("GET", "/v2/keepalive/repo/manifests/v1"),
    ("HEAD", "/v2/keepalive/repo/manifests/v1"),
    ("GET", "/v2/keepalive/repo/blobs/uploads/0123"),
    ("GET", "/api/v1/users/me"),
]


def answer(connection, method, path, body=None):
    connection.request(method, path, body=body)
    response = connection.getresponse()
    response.read()
    return response


@pytest.mark.parametrize("method,path", CHALLENGED_WITHOUT_A_BODY)
def test_a_request_without_a_body_refused_by_a_streaming_handler_keeps_its_connection_open(registry, method, path):
    connection = http.client.HTTPConnection("127.0.0.1", registry.port, timeout=10)
    refused = answer(connection, method, path)
    time.sleep(0.3)  # time for a close to arrive, so the next request would surely meet it

    again = answer(connection, "GET", "/v2/")

    assert refused.status == 401
    assert refused.getheader("Connection") is None
    assert again.status == 401 and again.getheader("WWW-Authenticate")


def test_a_body_refused_before_it_is_read_is_answered_with_connection_close(registry):
    connection = http.client.HTTPConnection("127.0.0.1", registry.port, timeout=10)

    refused = answer(connection, "PUT", "/v2/keepalive/repo/manifests/v1", body=b"{}" * 1000)

    assert refused.status == 401
    assert refused.getheader("Connection") == "close"
