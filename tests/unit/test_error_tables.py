"""Each API's one error table: every domain refusal maps to its wire code and status, in-process."""
import datetime

import pymongo.errors
import pytest

from handlers.api.errors import api_error_for
from handlers.registry.errors import registry_error_for
from services import errors as domain
from storage.blobstore import StorageUnavailable

PROJECT = {"name": "p", "storage_used": 90, "storage_quota": 100}


@pytest.mark.parametrize("error, code, status", [
    (domain.NameInvalid(), "NAME_INVALID", 400),
    (domain.NameUnknown(), "NAME_UNKNOWN", 404),
    (domain.ProjectGone(), "NAME_UNKNOWN", 404),
    (domain.BlobUnknown(), "BLOB_UNKNOWN", 404),
    (domain.ManifestUnknown(), "MANIFEST_UNKNOWN", 404),
    (domain.UploadUnknown(), "BLOB_UPLOAD_UNKNOWN", 404),
    (domain.UploadInvalid(), "BLOB_UPLOAD_INVALID", 400),
    (domain.UploadBusy(), "BLOB_UPLOAD_INVALID", 409),
    (domain.ContentRangeInvalid(), "RANGE_INVALID", 416),
    (domain.DigestInvalid(), "DIGEST_INVALID", 400),
    (domain.ManifestInvalid(), "MANIFEST_INVALID", 400),
    (domain.ManifestBlobUnknown(), "MANIFEST_BLOB_UNKNOWN", 400),
    (domain.ManifestTooLarge(), "SIZE_INVALID", 413),
    (domain.TagInvalid(), "TAG_INVALID", 400),
    (domain.PaginationInvalid(), "PAGINATION_NUMBER_INVALID", 400),
    (domain.QuotaExceeded(PROJECT, 20), "DENIED", 403),
    (domain.AccessDenied(), "DENIED", 403),
    (domain.TokenRequired(), "UNAUTHORIZED", 401),
    (domain.WrongCredentials(), "UNAUTHORIZED", 401),
    (domain.Throttled(datetime.datetime.now(datetime.timezone.utc)), "TOOMANYREQUESTS", 429),
    (domain.Unavailable(), "UNAVAILABLE", 503),
])
def test_registry_codes(error, code, status):
    wire = registry_error_for(error, "GET")

    assert (wire.code, wire.status) == (code, status)


def test_registry_range_errors_carry_their_headers():
    assert registry_error_for(domain.RangeNotSatisfiable("bytes=9-", 5), "GET").headers == {
        "Content-Range": "bytes */5"}
    assert registry_error_for(domain.UploadOffsetMismatch("u1", 100, 150), "PATCH").headers == {
        "Range": "0-99", "Docker-Upload-UUID": "u1"}


def test_a_quota_refusal_carries_its_figures():
    wire = registry_error_for(domain.QuotaExceeded(PROJECT, 20), "PUT")

    assert wire.detail == {"reason": "quota_exceeded", "adding": 20, "storage_used": 90, "storage_quota": 100}


@pytest.mark.parametrize("error", [domain.Unavailable(), StorageUnavailable("down"),
                                   pymongo.errors.ServerSelectionTimeoutError("no servers")])
def test_unavailable_backends_answer_503_with_retry_after_in_both_apis(error):
    wire = registry_error_for(error, "GET")
    envelope = api_error_for(error, "GET")

    assert (wire.code, wire.status, "Retry-After" in wire.headers) == ("UNAVAILABLE", 503, True)
    assert (envelope.code, envelope.status, "Retry-After" in envelope.headers) == (50003, 503, True)


@pytest.mark.parametrize("error, code", [
    (domain.WrongCredentials(), 30001),
    (domain.AccountDisabled(), 30003),
    (domain.Unauthenticated(), 30002),
    (domain.Throttled(datetime.datetime.now(datetime.timezone.utc)), 30004),
    (domain.Forbidden(), 30003),
    (domain.QuotaExceeded(PROJECT, 20), 30003),
    (domain.TooLarge(), 10003),
    (domain.Invalid(), 10001),
    (domain.NotFound(), 20001),
    (domain.Conflict(), 20002),
    (domain.Gone(), 20003),
    (RuntimeError("bug"), 50001),
])
def test_envelope_codes(error, code):
    assert api_error_for(error, "GET").code == code
