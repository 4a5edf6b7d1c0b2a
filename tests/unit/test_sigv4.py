"""SigV4 signatures against the examples AWS publishes: the S3 developer guide's (header and presigned URL)
and the generic signature test suite's ``get-vanilla``."""
import hashlib

import pytest

from storage import sigv4
from storage.aws_credentials import Credentials
from storage.s3_client import S3Client

# The S3 guide's example account, bucket and time.
S3_KEYS = Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
S3_HOST = "examplebucket.s3.amazonaws.com"
S3_DATE = "20130524T000000Z"
CREDENTIAL = "AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request"
WELCOME = b"Welcome to Amazon S3."


def s3_headers(payload_hash, **extra):
    return {"host": S3_HOST, "x-amz-date": S3_DATE, "x-amz-content-sha256": payload_hash, **extra}


@pytest.mark.parametrize("method, path, query, extra, body, signed, signature", [
    ("GET", "/test.txt", [], {"range": "bytes=0-9"}, b"", "host;range;x-amz-content-sha256;x-amz-date",
     "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"),
    ("PUT", "/test$file.text", [], {"date": "Fri, 24 May 2013 00:00:00 GMT",
                                    "x-amz-storage-class": "REDUCED_REDUNDANCY"}, WELCOME,
     "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
     "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"),
    ("GET", "/", [("lifecycle", "")], {}, b"", "host;x-amz-content-sha256;x-amz-date",
     "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"),
    ("GET", "/", [("prefix", "J"), ("max-keys", "2")], {}, b"", "host;x-amz-content-sha256;x-amz-date",
     "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"),
], ids=["get-object-range", "put-object", "get-bucket-lifecycle", "list-objects"])
def test_s3_guide_authorization_headers(method, path, query, extra, body, signed, signature):
    payload_hash = hashlib.sha256(body).hexdigest()

    header = sigv4.authorization(method, sigv4.uri_encode(path, safe="/-_.~"), query,
                                 s3_headers(payload_hash, **extra), payload_hash, S3_KEYS, S3_DATE, "us-east-1")

    assert header == (f"AWS4-HMAC-SHA256 Credential={CREDENTIAL}, SignedHeaders={signed}, "
                      f"Signature={signature}")


def test_s3_guide_presigned_url():
    query = sigv4.presigned_query("GET", "/test.txt", [], S3_HOST, S3_KEYS, S3_DATE, "us-east-1", 86400)

    assert query == ("X-Amz-Algorithm=AWS4-HMAC-SHA256"
                     "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
                     "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400"
                     "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
                     "&X-Amz-SignedHeaders=host")


def test_a_session_token_is_part_of_a_presigned_url():
    with_token = Credentials(S3_KEYS.access_key_id, S3_KEYS.secret_access_key, "token/with+signs")

    query = sigv4.presigned_query("GET", "/test.txt", [], S3_HOST, with_token, S3_DATE, "us-east-1", 86400)

    assert "X-Amz-Security-Token=token%2Fwith%2Bsigns" in query.split("&")
    assert "X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404" not in query


def test_signature_suite_get_vanilla():
    keys = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")

    header = sigv4.authorization("GET", "/", [], {"host": "example.amazonaws.com", "x-amz-date": "20150830T123600Z"},
                                 sigv4.EMPTY_SHA256, keys, "20150830T123600Z", "us-east-1", service="service")

    assert header == ("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
                      "SignedHeaders=host;x-amz-date, "
                      "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31")


def test_signing_key_derivation_example():
    key = sigv4.signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20120215", "us-east-1", "iam")

    assert key.hex() == "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"


@pytest.mark.parametrize("key, encoded", [
    ("library/alpine with space", "library/alpine%20with%20space"),
    ("a+b=c&d", "a%2Bb%3Dc%26d"),
    ("ünï/日本", "%C3%BCn%C3%AF/%E6%97%A5%E6%9C%AC"),
    ("tilde~star*(1)!'", "tilde~star%2A%281%29%21%27"),
])
def test_an_object_key_is_encoded_once_with_only_unreserved_characters_and_slashes_left(key, encoded):
    # S3 signs the path as sent, each byte outside A-Z a-z 0-9 - _ . ~ (and the slashes) percent-encoded.
    assert S3Client("bucket", endpoint_url="http://127.0.0.1:9")._path(key) == f"/bucket/{encoded}"


def test_query_values_are_encoded_and_sorted_the_same_in_the_signature_and_the_url():
    assert sigv4.canonical_query([("uploads", ""), ("prefix", "a b+c/ü")]) == "prefix=a%20b%2Bc%2F%C3%BC&uploads="
