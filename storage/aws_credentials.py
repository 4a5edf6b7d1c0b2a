"""AWS credentials for the S3 client, from the sources the AWS SDKs look at, in their order.

1. keys given in the configuration;
2. the environment: ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``;
3. the shared files of the profile ``AWS_PROFILE`` (or ``default``): ``AWS_SHARED_CREDENTIALS_FILE``
   (``~/.aws/credentials``), then static keys in ``AWS_CONFIG_FILE`` (``~/.aws/config``);
4. the instance role, from the EC2 instance metadata service (IMDSv2), refreshed before it expires.

Static keys are read once; a role's keys are fetched again five minutes before they expire.
"""
import asyncio
import configparser
import json
import os
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

IMDS_ENDPOINT = "http://169.254.169.254"
IMDS_TIMEOUT = 1.0
IMDS_ATTEMPTS = 2
# A role's keys are replaced this long before they expire, so a request never carries expired ones.
REFRESH_BEFORE = 300


class CredentialsUnavailable(Exception):
    """No source has credentials."""


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str
    session_token: str = ""
    expires_at: float | None = None  # epoch seconds; None: static keys

    def fresh(self):
        return self.expires_at is None or self.expires_at - time.time() > REFRESH_BEFORE


def _from_environment(environ):
    key, secret = environ.get("AWS_ACCESS_KEY_ID"), environ.get("AWS_SECRET_ACCESS_KEY")
    if key and secret:
        return Credentials(key, secret, environ.get("AWS_SESSION_TOKEN", ""))
    return None


def _from_shared_files(environ):
    profile = environ.get("AWS_PROFILE") or environ.get("AWS_DEFAULT_PROFILE") or "default"
    files = [(environ.get("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"), profile),
             # The config file names every section but the default one "profile NAME".
             (environ.get("AWS_CONFIG_FILE", "~/.aws/config"),
              profile if profile == "default" else f"profile {profile}")]
    for path, section in files:
        parser = configparser.RawConfigParser()
        try:
            parser.read(Path(path).expanduser())
        except configparser.Error:
            continue
        if not parser.has_section(section):
            continue
        values = dict(parser.items(section))
        if values.get("aws_access_key_id") and values.get("aws_secret_access_key"):
            return Credentials(values["aws_access_key_id"], values["aws_secret_access_key"],
                               values.get("aws_session_token", ""))
    return None


async def _from_instance_role(environ):
    """The role's keys from IMDSv2 (a session token first, then the role name, then its keys), or None."""
    if environ.get("AWS_EC2_METADATA_DISABLED", "").lower() == "true":
        return None
    from tornado.httpclient import AsyncHTTPClient, HTTPRequest  # only on instances without other keys

    base = environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT", IMDS_ENDPOINT).rstrip("/")
    client = AsyncHTTPClient()

    async def call(method, path, headers):
        for attempt in range(IMDS_ATTEMPTS):
            try:
                response = await client.fetch(HTTPRequest(
                    f"{base}{path}", method=method, headers=headers, body=b"" if method == "PUT" else None,
                    connect_timeout=IMDS_TIMEOUT, request_timeout=IMDS_TIMEOUT), raise_error=False)
            except OSError:
                response = None
            if response is not None and response.code == 200:
                return response.body.decode()
            if response is not None and response.code == 404 or attempt == IMDS_ATTEMPTS - 1:
                return None
        return None

    token = await call("PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "21600"})
    if token is None:
        return None
    headers = {"X-aws-ec2-metadata-token": token}
    roles = await call("GET", "/latest/meta-data/iam/security-credentials/", headers)
    role = (roles or "").split("\n")[0].strip()
    if not role:
        return None
    document = await call("GET", f"/latest/meta-data/iam/security-credentials/{role}", headers)
    if document is None:
        return None
    try:
        keys = json.loads(document)
        expires_at = datetime.fromisoformat(keys["Expiration"].replace("Z", "+00:00")).timestamp()
        return Credentials(keys["AccessKeyId"], keys["SecretAccessKey"], keys.get("Token", ""), expires_at)
    except (ValueError, KeyError, TypeError) as exc:
        raise CredentialsUnavailable(f"S3: the instance role's credentials cannot be read: {exc!r}") from exc


class CredentialChain:
    """The credentials of the first source that has them; ``await get()`` before each signature."""

    def __init__(self, access_key_id="", secret_access_key="", environ=None):
        self._environ = os.environ if environ is None else environ
        self._credentials = Credentials(access_key_id, secret_access_key) \
            if access_key_id and secret_access_key else None
        self._lock = asyncio.Lock()

    async def get(self):
        if self._credentials is not None and self._credentials.fresh():
            return self._credentials
        async with self._lock:  # one refresh for every request waiting on it
            if self._credentials is None or not self._credentials.fresh():
                self._credentials = await self._resolve()
        return self._credentials

    async def _resolve(self):
        found = _from_environment(self._environ) or _from_shared_files(self._environ) \
            or await _from_instance_role(self._environ)
        if found is None:
            raise CredentialsUnavailable(
                "S3: no credentials (configuration, environment, shared credentials file or instance role)")
        return found
