"""Where the S3 backend finds its keys when the configuration has none: the environment, a web identity
(exchanged at moto_server's STS), the shared files, a container role, the instance role. The container credentials endpoint and the instance metadata
service (IMDSv2) are served on loopback by a small Tornado app speaking their protocols, since no ECS task
or EC2 instance is at hand."""
import json
import time
from datetime import UTC, datetime

import pytest
import tornado.web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from storage.aws_credentials import (
    REFRESH_BEFORE,
    STILL_USABLE,
    CredentialChain,
    Credentials,
    CredentialsUnavailable,
)
from storage.blobstore import StorageUnavailable
from storage.s3_store import S3BlobStore
from tests.support.processes import free_port

NO_IMDS = {"AWS_EC2_METADATA_DISABLED": "true"}


async def test_configured_keys_come_before_the_environment():
    chain = CredentialChain("configured", "configured-secret",
                            environ={"AWS_ACCESS_KEY_ID": "env", "AWS_SECRET_ACCESS_KEY": "env-secret"})

    assert await chain.get() == Credentials("configured", "configured-secret")


async def test_the_environment_with_a_session_token():
    chain = CredentialChain(environ={"AWS_ACCESS_KEY_ID": "env", "AWS_SECRET_ACCESS_KEY": "env-secret",
                                     "AWS_SESSION_TOKEN": "env-token", **NO_IMDS})

    assert await chain.get() == Credentials("env", "env-secret", "env-token")


async def test_the_shared_credentials_file_of_the_chosen_profile(tmp_path):
    (tmp_path / "credentials").write_text("[default]\naws_access_key_id = default\naws_secret_access_key = d\n"
                                          "[ci]\naws_access_key_id = ci\naws_secret_access_key = ci-secret\n")
    chain = CredentialChain(environ={"AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials"),
                                     "AWS_CONFIG_FILE": str(tmp_path / "missing"), "AWS_PROFILE": "ci", **NO_IMDS})

    assert await chain.get() == Credentials("ci", "ci-secret")


async def test_static_keys_in_the_config_file_under_profile_name(tmp_path):
    (tmp_path / "config").write_text("[profile ci]\naws_access_key_id = ci\naws_secret_access_key = ci-secret\n"
                                     "aws_session_token = ci-token\n")
    chain = CredentialChain(environ={"AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "missing"),
                                     "AWS_CONFIG_FILE": str(tmp_path / "config"), "AWS_PROFILE": "ci", **NO_IMDS})

    assert await chain.get() == Credentials("ci", "ci-secret", "ci-token")


def _empty_files(tmp_path):
    return {"AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"), "AWS_CONFIG_FILE": str(tmp_path / "none")}


async def test_no_source_refuses_and_the_store_is_unavailable(tmp_path):
    environ = {**_empty_files(tmp_path), **NO_IMDS}
    with pytest.raises(CredentialsUnavailable):
        await CredentialChain(environ=environ).get()

    store = S3BlobStore("no-keys", endpoint_url="http://127.0.0.1:9")
    store.client.credentials = CredentialChain(environ=environ)
    with pytest.raises(StorageUnavailable, match="no credentials"):
        await store.ping()


def _web_identity(tmp_path, moto):
    (tmp_path / "token").write_text("eyJhbGciOiJSUzI1NiJ9.service-account.signature\n")
    return {"AWS_WEB_IDENTITY_TOKEN_FILE": str(tmp_path / "token"),
            "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/registry", "AWS_ENDPOINT_URL_STS": moto.endpoint_url,
            **_empty_files(tmp_path), **NO_IMDS}


async def test_a_web_identity_token_is_exchanged_at_sts_for_the_roles_temporary_keys(tmp_path, moto):
    keys = await CredentialChain(environ=_web_identity(tmp_path, moto)).get()

    assert keys.access_key_id.startswith("ASIA") and keys.secret_access_key and keys.session_token
    assert keys.expires_at > time.time() + REFRESH_BEFORE


async def test_a_web_identity_comes_after_the_environment_and_before_the_shared_files(tmp_path, moto):
    (tmp_path / "credentials").write_text("[default]\naws_access_key_id = file\naws_secret_access_key = f\n")
    environ = {**_web_identity(tmp_path, moto), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials")}

    from_sts = await CredentialChain(environ=environ).get()
    from_environment = await CredentialChain(environ={**environ, "AWS_ACCESS_KEY_ID": "env",
                                                      "AWS_SECRET_ACCESS_KEY": "env-secret"}).get()

    assert from_sts.access_key_id.startswith("ASIA")
    assert from_environment == Credentials("env", "env-secret")


async def test_an_unreadable_web_identity_token_is_refused_naming_it(tmp_path, moto):
    environ = {**_web_identity(tmp_path, moto), "AWS_WEB_IDENTITY_TOKEN_FILE": str(tmp_path / "absent")}

    with pytest.raises(CredentialsUnavailable, match="web identity token cannot be read"):
        await CredentialChain(environ=environ).get()


class InstanceMetadata:
    """IMDSv2 on loopback: a session token by PUT, then the role and its keys for requests carrying it;
    and a container credentials endpoint for requests carrying its authorization token."""

    def __init__(self, lifetime):
        self.lifetime = lifetime
        self.issued = 0
        metadata = self

        class Token(tornado.web.RequestHandler):
            def put(self):
                assert self.request.headers["X-aws-ec2-metadata-token-ttl-seconds"] == "21600"
                self.write("session-token")

        class Role(tornado.web.RequestHandler):
            def get(self, role):
                if self.request.headers.get("X-aws-ec2-metadata-token") != "session-token":
                    raise tornado.web.HTTPError(401)
                if not role:
                    self.write("registry-role")
                    return
                self.write(metadata.keys())

        class Container(tornado.web.RequestHandler):
            def get(self):
                if self.request.headers.get("Authorization") != "container-token":
                    raise tornado.web.HTTPError(401)
                self.write(metadata.keys())

        app = tornado.web.Application([(r"/latest/api/token", Token),
                                       (r"/latest/meta-data/iam/security-credentials/(.*)", Role),
                                       (r"/container/credentials", Container)])
        sockets = bind_sockets(0, "127.0.0.1")
        self.server = HTTPServer(app)
        self.server.add_sockets(sockets)
        self.endpoint = f"http://127.0.0.1:{sockets[0].getsockname()[1]}"

    def keys(self):
        self.issued += 1
        expires = datetime.fromtimestamp(time.time() + self.lifetime, UTC)
        return json.dumps({"AccessKeyId": f"role-{self.issued}", "SecretAccessKey": "role-secret",
                           "Token": "role-token", "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ")})


@pytest.fixture
async def instance_metadata():
    servers = []

    def start(lifetime):
        servers.append(InstanceMetadata(lifetime))
        return servers[-1]
    yield start
    for metadata in servers:
        metadata.server.stop()


async def test_the_instance_role_through_imdsv2(tmp_path, instance_metadata):
    metadata = instance_metadata(lifetime=3600)
    chain = CredentialChain(environ={**_empty_files(tmp_path), "AWS_EC2_METADATA_SERVICE_ENDPOINT": metadata.endpoint})

    first = await chain.get()
    again = await chain.get()

    assert (first.access_key_id, first.secret_access_key, first.session_token) == ("role-1", "role-secret", "role-token")
    assert again is first and metadata.issued == 1


async def test_role_keys_about_to_expire_are_fetched_again(tmp_path, instance_metadata):
    metadata = instance_metadata(lifetime=REFRESH_BEFORE - 60)
    chain = CredentialChain(environ={**_empty_files(tmp_path), "AWS_EC2_METADATA_SERVICE_ENDPOINT": metadata.endpoint})

    assert (await chain.get()).access_key_id == "role-1"
    assert (await chain.get()).access_key_id == "role-2"


async def test_keys_still_valid_are_used_while_their_refresh_fails(tmp_path, instance_metadata):
    metadata = instance_metadata(lifetime=REFRESH_BEFORE - 60)
    chain = CredentialChain(environ={**_empty_files(tmp_path), "AWS_EC2_METADATA_SERVICE_ENDPOINT": metadata.endpoint})
    assert (await chain.get()).access_key_id == "role-1"
    metadata.server.stop()  # the metadata service stops answering (throttled, restarting)

    assert (await chain.get()).access_key_id == "role-1"
    assert (await chain.get()).access_key_id == "role-1"
    assert metadata.issued == 1


async def test_keys_about_to_expire_whose_refresh_fails_are_refused(tmp_path, instance_metadata):
    metadata = instance_metadata(lifetime=STILL_USABLE - 30)
    chain = CredentialChain(environ={**_empty_files(tmp_path), "AWS_EC2_METADATA_SERVICE_ENDPOINT": metadata.endpoint})
    assert (await chain.get()).access_key_id == "role-1"
    metadata.server.stop()

    with pytest.raises(CredentialsUnavailable):
        await chain.get()


async def test_a_container_role_with_its_authorization_token(tmp_path, instance_metadata):
    metadata = instance_metadata(lifetime=3600)
    chain = CredentialChain(environ={**_empty_files(tmp_path), **NO_IMDS,
                                     "AWS_CONTAINER_CREDENTIALS_FULL_URI": f"{metadata.endpoint}/container/credentials",
                                     "AWS_CONTAINER_AUTHORIZATION_TOKEN": "container-token"})

    keys = await chain.get()

    assert (keys.access_key_id, keys.secret_access_key, keys.session_token) == ("role-1", "role-secret", "role-token")


async def test_a_container_endpoint_that_refuses_leaves_no_credentials(tmp_path, instance_metadata):
    metadata = instance_metadata(lifetime=3600)
    chain = CredentialChain(environ={**_empty_files(tmp_path), **NO_IMDS,
                                     "AWS_CONTAINER_CREDENTIALS_FULL_URI": f"{metadata.endpoint}/container/credentials"})

    with pytest.raises(CredentialsUnavailable):
        await chain.get()


async def test_no_instance_metadata_service_leaves_no_credentials(tmp_path):
    chain = CredentialChain(environ={**_empty_files(tmp_path),
                                     "AWS_EC2_METADATA_SERVICE_ENDPOINT": f"http://127.0.0.1:{free_port()}"})

    with pytest.raises(CredentialsUnavailable):
        await chain.get()
