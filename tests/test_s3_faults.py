"""The S3 blob store when the network or S3 misbehaves: real moto_server behind a loopback proxy that keeps
connections alive as S3 does, and loses answers, stalls error bodies, answers web pages, ignores ranges or
closes connections. Every failure reaches callers as StorageUnavailable (503), a request S3 carried out is
not failed for a retry's answer, no wrong byte is ever handed out, and a connection is used again only
after an answer read whole."""
import asyncio
import ctypes
import gc
import mmap
import secrets
import time

import boto3
import pytest

from storage import s3_client
from storage.blobstore import StorageUnavailable
from storage.s3_store import PART_SIZE, S3BlobStore
from tests.support.manifests import sha256
from tests.support.s3 import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY
from tests.support.s3_faults import (
    CLOSE_ANNOUNCED,
    CLOSED_ON_ARRIVAL,
    CUT_ANSWER,
    IGNORE_RANGE,
    INTERNAL_ERROR_IN_200,
    LOSE_ANSWER,
    NO_SUCH_UPLOAD,
    NOT_XML,
    SILENT,
    STALLED_BODY,
    STALLED_ERROR,
    THROTTLED_BODY,
    TRAILING_ANSWER,
    FaultyS3Proxy,
    TlsFront,
)
from tests.support.remotes import make_test_ca_and_server_cert


@pytest.fixture
async def proxy(moto):
    proxy = await FaultyS3Proxy(moto.port).start()
    yield proxy
    await proxy.stop()


async def proxied_store(proxy):
    store = S3BlobStore(f"faults-{secrets.token_hex(4)}", region=REGION, endpoint_url=proxy.endpoint_url,
                        access_key_id=ACCESS_KEY_ID, secret_access_key=SECRET_ACCESS_KEY)
    await store.ensure_ready()
    return store


@pytest.fixture
async def store(proxy):
    store = await proxied_store(proxy)
    yield store
    await store.close()


async def start_tls_front(proxy, directory, monkeypatch):
    """The proxy behind TLS, its certificate (for localhost) signed by a CA the S3 client trusts: it reads the
    system's trusted CAs, from SSL_CERT_FILE when set, as it is made."""
    ca_path, cert_path, key_path = make_test_ca_and_server_cert(directory)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_path))
    return await TlsFront(proxy.port, cert_path, key_path).start()


def https_store(front):
    return S3BlobStore(f"faults-{secrets.token_hex(4)}", region=REGION, endpoint_url=f"https://localhost:{front.port}",
                       access_key_id=ACCESS_KEY_ID, secret_access_key=SECRET_ACCESS_KEY)


@pytest.fixture
async def tls_front(proxy, tmp_path, monkeypatch):
    front = await start_tls_front(proxy, tmp_path, monkeypatch)
    yield front
    await front.stop()


@pytest.fixture(params=["http", "https"])
async def either_store(request, proxy, tmp_path, monkeypatch):
    """A store on the proxy, over plain HTTP or over TLS."""
    if request.param == "https":
        front = await start_tls_front(proxy, tmp_path, monkeypatch)
        store = https_store(front)
        await store.ensure_ready()
    else:
        front, store = None, await proxied_store(proxy)
    yield store
    await store.close()
    if front:
        await front.stop()


async def store_blob(store, data):
    writer = await store.open_writer(store.new_upload_state())
    await writer.write(data)
    return await writer.commit(sha256(data))


async def read_all(store, ref, start, length):
    return b"".join([piece async for piece in store.read(ref, start, length)])


async def until(condition, timeout=10):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition did not come true in time"
        await asyncio.sleep(0.05)


def resident_pages(buffer):
    """How many pages of the anonymous map ``buffer`` are in memory, as the kernel counts them (mincore)."""
    pointer = ctypes.c_char.from_buffer(buffer)
    pages = (ctypes.c_ubyte * (len(buffer) // mmap.PAGESIZE))()
    try:
        assert ctypes.CDLL(None).mincore(ctypes.c_void_p(ctypes.addressof(pointer)), ctypes.c_size_t(len(buffer)),
                                         pages) == 0
    finally:
        del pointer
    return sum(page & 1 for page in pages)


async def writer_whose_first_part_failed(store, proxy):
    """A writer whose first part S3 never answered (every try), found out when the second part is full."""
    proxy.add(LOSE_ANSWER, "PUT", "partNumber=1&", times=2 * s3_client.ATTEMPTS)
    writer = await store.open_writer(store.new_upload_state())
    await writer.write(secrets.token_bytes(PART_SIZE))
    with pytest.raises(StorageUnavailable) as failure:
        await writer.write(secrets.token_bytes(PART_SIZE))
    return writer, failure.value


def completions(proxy):
    return [action for method, target, action in proxy.seen if method == "POST" and "uploadId=" in target]


async def test_a_multipart_commit_whose_answer_was_lost_is_retried_and_lands_once(store, proxy, moto):
    data = secrets.token_bytes(PART_SIZE + 1000)
    proxy.add(LOSE_ANSWER, "POST", "uploadId=")  # S3 completes the upload; the client never hears it

    ref = await store_blob(store, data)

    assert completions(proxy) == [LOSE_ANSWER, None]
    assert await read_all(store, ref, 0, len(data)) == data
    boto = boto3.client("s3", endpoint_url=moto.endpoint_url, region_name=REGION,
                        aws_access_key_id=ACCESS_KEY_ID, aws_secret_access_key=SECRET_ACCESS_KEY)
    assert boto.head_object(Bucket=store.bucket, Key=ref["key"])["ContentLength"] == len(data)


async def test_a_commit_whose_retry_finds_the_upload_completed_succeeds(store, proxy):
    data = secrets.token_bytes(PART_SIZE + 1000)
    proxy.add(LOSE_ANSWER, "POST", "uploadId=")
    proxy.add(NO_SUCH_UPLOAD, "POST", "uploadId=")  # what S3 answers once it has completed the upload

    ref = await store_blob(store, data)

    assert completions(proxy) == [LOSE_ANSWER, NO_SUCH_UPLOAD]
    assert await read_all(store, ref, 0, len(data)) == data


async def test_a_commit_answered_200_with_an_internal_error_is_retried(store, proxy):
    data = secrets.token_bytes(PART_SIZE + 1000)
    proxy.add(INTERNAL_ERROR_IN_200, "POST", "uploadId=")

    ref = await store_blob(store, data)

    assert completions(proxy) == [INTERNAL_ERROR_IN_200, None]
    assert await read_all(store, ref, 0, len(data)) == data


async def test_a_commit_of_an_upload_s3_does_not_know_is_refused(store, proxy):
    data = secrets.token_bytes(PART_SIZE + 1000)
    proxy.add(NO_SUCH_UPLOAD, "POST", "uploadId=")  # never completed: there is no object at the key

    with pytest.raises(StorageUnavailable, match="NoSuchUpload"):
        await store_blob(store, data)


async def test_a_listing_whose_answer_breaks_off_is_asked_again(store, proxy, moto):
    writer = await store.open_writer(store.new_upload_state())
    await writer.write(secrets.token_bytes(PART_SIZE))
    state = await writer.checkpoint()
    proxy.seen.clear()
    proxy.add(CUT_ANSWER, "GET", "?prefix=")

    await store.abort(state)

    assert [action for method, target, action in proxy.seen if "?prefix=" in target] == [CUT_ANSWER, None]
    boto = boto3.client("s3", endpoint_url=moto.endpoint_url, region_name=REGION,
                        aws_access_key_id=ACCESS_KEY_ID, aws_secret_access_key=SECRET_ACCESS_KEY)
    assert boto.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []) == []


@pytest.mark.parametrize("stall", [SILENT, STALLED_ERROR, STALLED_BODY])
async def test_a_read_from_s3_that_stops_answering_times_out_as_storage_unavailable(store, proxy, monkeypatch, stall):
    ref = await store_blob(store, b"some bytes")
    monkeypatch.setattr(s3_client, "READ_TIMEOUT", 0.5)
    proxy.add(stall, "GET", ref["key"], times=s3_client.ATTEMPTS)

    with pytest.raises(StorageUnavailable):
        await read_all(store, ref, 0, 10)
    await until(lambda: proxy.open_connections == 0)


@pytest.mark.parametrize("method, target_part", [("POST", "?uploads"), ("GET", "?prefix=")],
                         ids=["create-multipart-upload", "list-multipart-uploads"])
async def test_an_answer_that_is_not_s3_xml_is_storage_unavailable(store, proxy, method, target_part):
    proxy.add(NOT_XML, method, target_part)
    writer = await store.open_writer(store.new_upload_state())

    with pytest.raises(StorageUnavailable, match="not an S3 answer"):
        await writer.write(secrets.token_bytes(PART_SIZE))
        await writer.checkpoint()


async def test_a_server_that_ignores_the_range_never_hands_out_other_bytes(store, proxy):
    data = secrets.token_bytes(1000)
    ref = await store_blob(store, data)
    proxy.add(IGNORE_RANGE, "GET", ref["key"])

    received = []
    with pytest.raises(StorageUnavailable, match="ignored the range"):
        async for piece in store.read(ref, 100, 50):
            received.append(piece)

    assert received == []
    assert await read_all(store, ref, 100, 50) == data[100:150]


async def test_a_part_whose_answer_was_lost_is_sent_again_whole(store, proxy):
    data = secrets.token_bytes(PART_SIZE + 1000)
    proxy.add(LOSE_ANSWER, "PUT", "partNumber=1&")

    ref = await store_blob(store, data)

    assert [action for method, target, action in proxy.seen if "partNumber=1&" in target] == [LOSE_ANSWER, None]
    assert await read_all(store, ref, 0, len(data)) == data


async def test_a_part_sent_slowly_but_steadily_is_not_cut_off_by_the_time_an_answer_may_take(
        store, proxy, monkeypatch):
    # Each piece of the body goes out well within the read timeout; the whole part takes several of them.
    monkeypatch.setattr(s3_client, "READ_TIMEOUT", 1)
    data = secrets.token_bytes(PART_SIZE + 1000)
    proxy.add(THROTTLED_BODY, "PUT", "partNumber=1&")

    ref = await store_blob(store, data)

    assert [action for method, target, action in proxy.seen if "partNumber=1&" in target] == [THROTTLED_BODY]
    assert await read_all(store, ref, 0, len(data)) == data


async def test_a_read_closed_half_way_closes_its_connection_to_s3(store, proxy):
    ref = await store_blob(store, secrets.token_bytes(PART_SIZE + 1000))
    pieces = store.read(ref, 0, PART_SIZE + 1000)
    await anext(pieces)
    assert proxy.open_connections == 1

    await pieces.aclose()

    await until(lambda: proxy.open_connections == 0)


async def test_a_read_abandoned_half_way_without_closing_still_closes_its_connection(store, proxy):
    ref = await store_blob(store, secrets.token_bytes(PART_SIZE + 1000))
    pieces = store.read(ref, 0, PART_SIZE + 1000)
    await anext(pieces)
    assert proxy.open_connections == 1

    del pieces
    gc.collect()

    await until(lambda: proxy.open_connections == 0)


async def test_a_part_that_failed_gives_the_writers_part_buffers_back_at_once(store, proxy):
    writer, error = await writer_whose_first_part_failed(store, proxy)

    # The error, still held, reaches views of both buffers through its traceback (in reference cycles that only
    # the garbage collector breaks): their pages go back all the same.
    assert error.__traceback__ is not None
    assert (resident_pages(writer.part), resident_pages(writer.in_flight)) == (0, 0)


async def test_a_writer_whose_part_failed_refuses_to_checkpoint_a_state_without_that_part(store, proxy):
    writer, _ = await writer_whose_first_part_failed(store, proxy)

    with pytest.raises(StorageUnavailable, match="not stored"):
        await writer.checkpoint()


async def test_requests_one_after_another_share_one_connection(store, proxy):
    data = secrets.token_bytes(PART_SIZE + 1000)

    ref = await store_blob(store, data)  # listing, CreateMultipartUpload, two parts, CompleteMultipartUpload
    assert await read_all(store, ref, 0, len(data)) == data
    await store.delete(ref)

    assert len(proxy.seen) == 9  # with the bucket's HEAD (404) and PUT
    assert proxy.accepted == 1


async def test_an_https_endpoint_is_asked_for_by_its_name_and_its_tls_connection_kept(tls_front, proxy):
    store = https_store(tls_front)
    data = secrets.token_bytes(PART_SIZE + 1000)

    await store.ensure_ready()
    ref = await store_blob(store, data)
    assert await read_all(store, ref, 0, len(data)) == data
    await store.close()

    assert tls_front.server_names == ["localhost"]  # one TLS connection, its certificate checked for that name
    assert proxy.accepted == 1


async def test_an_error_answer_read_whole_leaves_its_connection_for_the_next_request(store, proxy):
    with pytest.raises(StorageUnavailable, match="NoSuchKey"):
        await read_all(store, {"key": "missing"}, 0, 10)

    await store.ping()

    assert proxy.accepted == 1


async def test_a_connection_the_server_closed_while_idle_is_replaced_without_an_error(store, proxy):
    proxy.close_idle()
    await until(lambda: proxy.open_connections == 0)

    await store.ping()

    assert proxy.accepted == 2


async def test_a_part_that_meets_its_connection_closing_is_sent_again_on_a_new_one_without_costing_a_try(
        store, proxy):
    data = secrets.token_bytes(PART_SIZE + 1000)
    # The first close meets the idle connection the part was sent on; each try after it meets one more.
    proxy.add(CLOSED_ON_ARRIVAL, "PUT", "partNumber=1&", times=s3_client.ATTEMPTS)

    ref = await store_blob(store, data)

    assert [action for method, target, action in proxy.seen if "partNumber=1&" in target] == \
        [CLOSED_ON_ARRIVAL] * s3_client.ATTEMPTS + [None]
    assert await read_all(store, ref, 0, len(data)) == data


async def test_bytes_that_came_after_an_answer_are_never_taken_for_the_next_answer(either_store, proxy):
    store = either_store
    data = secrets.token_bytes(10)
    ref = await store_blob(store, data)
    proxy.add(TRAILING_ANSWER, "HEAD", "")  # a whole answer, then a forged 206 of ten other bytes

    await store.ping()

    assert await read_all(store, ref, 0, 10) == data
    assert proxy.accepted == 2  # the connection that carried the stray bytes was not used again


async def test_an_answer_that_announces_connection_close_has_its_connection_closed(store, proxy):
    proxy.add(CLOSE_ANNOUNCED, "HEAD", "")

    await store.ping()

    await until(lambda: proxy.open_connections == 0)
    await store.ping()
    assert proxy.accepted == 2


async def test_an_idle_connection_is_closed_after_the_idle_time(proxy, monkeypatch):
    monkeypatch.setattr(s3_client, "IDLE_SECONDS", 0.2)
    store = await proxied_store(proxy)
    assert proxy.open_connections == 1

    await until(lambda: proxy.open_connections == 0)
    await store.close()


async def test_no_more_than_the_pool_size_wait_idle(proxy, monkeypatch):
    monkeypatch.setattr(s3_client, "POOL_SIZE", 2)
    store = await proxied_store(proxy)

    await asyncio.gather(*(store.ping() for _ in range(4)))

    assert proxy.accepted == 4
    await until(lambda: proxy.open_connections == 2)
    await store.close()


async def test_closing_the_store_closes_its_idle_connections(proxy):
    store = await proxied_store(proxy)
    assert proxy.open_connections == 1

    await store.close()

    await until(lambda: proxy.open_connections == 0)
