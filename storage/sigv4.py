"""AWS Signature Version 4 for S3: the Authorization header of a request, and presigned URLs.

Pure functions of the request and the credentials (AWS's "Signing AWS API requests" specification,
with S3's rules: the path is encoded once, not twice, and the payload hash travels in
``x-amz-content-sha256``).
"""
import hashlib
import hmac
from urllib.parse import quote

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"


def uri_encode(text, safe="-_.~"):
    """RFC 3986 percent-encoding of everything but the unreserved characters (and ``safe``)."""
    return quote(text, safe=safe)


def canonical_query(query):
    """``query``: (name, value) pairs, unencoded; sorted by encoded name, then value."""
    pairs = sorted((uri_encode(name), uri_encode(value)) for name, value in query)
    return "&".join(f"{name}={value}" for name, value in pairs)


def _hmac(key, text):
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signing_key(secret_access_key, date, region, service):
    key = _hmac(f"AWS4{secret_access_key}".encode(), date)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    return key


def _scope(amz_date, region, service):
    return f"{amz_date[:8]}/{region}/{service}/aws4_request"


def _signature(method, path, query, headers, payload_hash, secret_access_key, amz_date, region, service):
    """``headers``: the signed headers, names in lower case; ``path`` already encoded."""
    names = sorted(headers)
    canonical = "\n".join([
        method, path, canonical_query(query),
        "".join(f"{name}:{' '.join(str(headers[name]).split())}\n" for name in names),
        ";".join(names), payload_hash])
    to_sign = "\n".join([ALGORITHM, amz_date, _scope(amz_date, region, service),
                         hashlib.sha256(canonical.encode()).hexdigest()])
    key = signing_key(secret_access_key, amz_date[:8], region, service)
    return ";".join(names), hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def authorization(method, path, query, headers, payload_hash, credentials, amz_date, region, service="s3"):
    """The Authorization header of a request whose ``headers`` (lower-case names, ``host`` and
    ``x-amz-date`` among them) are all signed."""
    signed, signature = _signature(method, path, query, headers, payload_hash, credentials.secret_access_key,
                                   amz_date, region, service)
    return (f"{ALGORITHM} Credential={credentials.access_key_id}/{_scope(amz_date, region, service)}, "
            f"SignedHeaders={signed}, Signature={signature}")


def presigned_query(method, path, query, host, credentials, amz_date, region, expires, service="s3"):
    """The query string of a presigned URL: ``query`` plus the signature parameters; only ``host`` is signed."""
    query = list(query) + [
        ("X-Amz-Algorithm", ALGORITHM),
        ("X-Amz-Credential", f"{credentials.access_key_id}/{_scope(amz_date, region, service)}"),
        ("X-Amz-Date", amz_date), ("X-Amz-Expires", str(expires)), ("X-Amz-SignedHeaders", "host")]
    if credentials.session_token:
        query.append(("X-Amz-Security-Token", credentials.session_token))
    _, signature = _signature(method, path, query, {"host": host}, UNSIGNED_PAYLOAD, credentials.secret_access_key,
                              amz_date, region, service)
    return canonical_query(query + [("X-Amz-Signature", signature)])
