"""The S3 backend's own signatures, checked by a moto_server that authenticates every request (it recomputes
each SigV4 signature with the keys of an IAM user it knows): every operation the store uses, and the
refusal of a wrong secret. moto does not authenticate presigned URLs; those are checked against AWS's
published example in tests/unit/test_sigv4.py and followed by skopeo in tests/test_storage_backends.py. Temporary keys
are an assumed role's, from moto_server's STS, which checks their session token."""
import json
import secrets

import boto3
import pytest
import requests

from storage.aws_credentials import CredentialChain
from storage.blobstore import StorageUnavailable
from storage.s3_store import PART_SIZE, S3BlobStore
from tests.support.manifests import sha256
from tests.support.s3 import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, MotoServer

ALLOW_S3 = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
ALLOW_ASSUMING = {"Version": "2012-10-17",
                  "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]}
ALLOW_STS = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}]}
ROLE_ARN = "arn:aws:iam::123456789012:role/registry-role"


@pytest.fixture(scope="module")
def authenticating_moto(tmp_path_factory):
    """A moto_server of its own (authentication is server-wide) and the keys of a user allowed S3."""
    moto = MotoServer(tmp_path_factory.mktemp("moto-auth")).start()
    try:
        iam = boto3.client("iam", endpoint_url=moto.endpoint_url, region_name=REGION,
                           aws_access_key_id=ACCESS_KEY_ID, aws_secret_access_key=SECRET_ACCESS_KEY)
        iam.create_user(UserName="registry")
        iam.put_user_policy(UserName="registry", PolicyName="s3", PolicyDocument=json.dumps(ALLOW_S3))
        # A role allowed S3 too, whose temporary keys (with a session token) the user can take at STS.
        iam.create_role(RoleName="registry-role", AssumeRolePolicyDocument=json.dumps(ALLOW_ASSUMING))
        iam.put_role_policy(RoleName="registry-role", PolicyName="s3", PolicyDocument=json.dumps(ALLOW_S3))
        iam.put_user_policy(UserName="registry", PolicyName="sts", PolicyDocument=json.dumps(ALLOW_STS))
        keys = iam.create_access_key(UserName="registry")["AccessKey"]
        # From here on, every request must carry a valid signature of a known user.
        requests.post(f"{moto.endpoint_url}/moto-api/reset-auth", data=b"0", timeout=10).raise_for_status()
        yield moto, keys["AccessKeyId"], keys["SecretAccessKey"]
    finally:
        moto.stop()


def store_on(moto, access_key_id, secret_access_key, region=REGION):
    return S3BlobStore(f"signed-{secrets.token_hex(4)}", region=region, endpoint_url=moto.endpoint_url,
                       access_key_id=access_key_id, secret_access_key=secret_access_key)


async def test_every_operation_of_the_store_passes_signature_checks(authenticating_moto):
    moto, access_key_id, secret_access_key = authenticating_moto
    store = store_on(moto, access_key_id, secret_access_key)
    data = secrets.token_bytes(PART_SIZE + 1000)

    await store.ensure_ready()  # HeadBucket, CreateBucket
    writer = await store.open_writer(store.new_upload_state())
    await writer.write(data)  # CreateMultipartUpload, UploadPart
    state = await writer.checkpoint()
    ref = await writer.commit(sha256(data))  # UploadPart, CompleteMultipartUpload
    read = b"".join([piece async for piece in store.read(ref, 10, PART_SIZE)])  # ranged GetObject
    await store.abort(state)  # ListMultipartUploads (nothing left to abort)
    await store.delete(ref)  # DeleteObject

    assert read == data[10:10 + PART_SIZE]
    boto = boto3.client("s3", endpoint_url=moto.endpoint_url, region_name=REGION, aws_access_key_id=access_key_id,
                        aws_secret_access_key=secret_access_key)
    assert boto.list_objects_v2(Bucket=store.bucket).get("KeyCount", 0) == 0


async def test_a_wrong_secret_is_refused_as_storage_unavailable(authenticating_moto):
    moto, access_key_id, _ = authenticating_moto

    with pytest.raises(StorageUnavailable, match="SignatureDoesNotMatch|403"):
        await store_on(moto, access_key_id, "not-the-secret").ensure_ready()


async def test_a_bucket_outside_us_east_1_is_created_in_its_region(authenticating_moto):
    moto, access_key_id, secret_access_key = authenticating_moto
    store = store_on(moto, access_key_id, secret_access_key, region="eu-west-1")

    await store.ensure_ready()
    await store.ping()

    boto = boto3.client("s3", endpoint_url=moto.endpoint_url, region_name="eu-west-1",
                        aws_access_key_id=access_key_id, aws_secret_access_key=secret_access_key)
    assert boto.get_bucket_location(Bucket=store.bucket)["LocationConstraint"] == "eu-west-1"


@pytest.mark.parametrize("key", ["library/alpine with space", "a+b=c&d", "ünïcödé/日本", "tilde~star*(1)!'"],
                         ids=["space", "plus-equals-ampersand", "unicode", "sub-delims"])
async def test_keys_that_need_encoding_are_signed_in_path_and_query(authenticating_moto, key):
    moto, access_key_id, secret_access_key = authenticating_moto
    store = store_on(moto, access_key_id, secret_access_key)
    await store.ensure_ready()
    client = store.client
    data = secrets.token_bytes(3000)

    await client.put_object(key, data)
    upload_id = await client.create_multipart_upload(key)
    listed = await client.list_multipart_uploads(key)  # the key travels in the query (prefix=...)
    await client.abort_multipart_upload(key, upload_id)
    middle = b"".join([piece async for piece in client.get_object(key, 1000, 1999)])
    await client.delete_object(key)

    assert listed == [(key, upload_id)]
    assert middle == data[1000:2000]
    assert await client.object_size(key) is None


def role_keys(moto, access_key_id, secret_access_key):
    sts = boto3.client("sts", endpoint_url=moto.endpoint_url, region_name=REGION, aws_access_key_id=access_key_id,
                       aws_secret_access_key=secret_access_key)
    return sts.assume_role(RoleArn=ROLE_ARN, RoleSessionName="registry")["Credentials"]


def store_with_session(moto, keys, session_token):
    store = S3BlobStore(f"session-{secrets.token_hex(4)}", region=REGION, endpoint_url=moto.endpoint_url)
    store.client.credentials = CredentialChain(environ={
        "AWS_ACCESS_KEY_ID": keys["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": keys["SecretAccessKey"],
        "AWS_SESSION_TOKEN": session_token})
    return store


async def test_temporary_keys_sign_with_their_session_token_and_an_empty_body(authenticating_moto):
    keys = role_keys(*authenticating_moto)
    store = store_with_session(authenticating_moto[0], keys, keys["SessionToken"])

    await store.ensure_ready()
    await store.client.put_object("empty", b"")

    assert await store.client.object_size("empty") == 0


async def test_temporary_keys_with_a_wrong_session_token_are_refused(authenticating_moto):
    keys = role_keys(*authenticating_moto)

    with pytest.raises(StorageUnavailable):
        await store_with_session(authenticating_moto[0], keys, "not-the-token").ensure_ready()
