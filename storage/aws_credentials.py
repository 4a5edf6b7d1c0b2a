"""AWS credentials for the S3 client, from the sources the AWS SDKs look at, in their order.

1. keys given in the configuration;
2. the environment: ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``;
3. a web identity: the token in ``AWS_WEB_IDENTITY_TOKEN_FILE`` exchanged at STS for the keys of the role
   ``AWS_ROLE_ARN`` (EKS service accounts);
4. the shared files of the profile ``AWS_PROFILE`` (or ``default``): ``AWS_SHARED_CREDENTIALS_FILE``
   (``~/.aws/credentials``), then static keys in ``AWS_CONFIG_FILE`` (``~/.aws/config``);
5. a container role: ``AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`` (ECS) or ``_FULL_URI``, with
   ``AWS_CONTAINER_AUTHORIZATION_TOKEN`` when set;
6. the instance role, from the EC2 instance metadata service (IMDSv2).

Static keys are read once; a role's keys are fetched again five minutes before they expire (if that fails,
the keys in hand go on being used until a minute before they expire, and the source is asked again
every REFRESH_RETRY seconds meanwhile).
"""
import asyncio
import configparser
import json
import os
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import urlencode
from xml.etree import ElementTree

IMDS_ENDPOINT = "http://169.254.169.254"
ECS_ENDPOINT = "http://169.254.170.2"
METADATA_TIMEOUT = 1.0
STS_TIMEOUT = 10.0
STS_NAMESPACE = "{https://sts.amazonaws.com/doc/2011-06-15/}"
METADATA_ATTEMPTS = 2
# A role's keys are replaced this long before they expire, so a request never carries expired ones.
REFRESH_BEFORE = 300
# When that replacement fails (the metadata service throttles, STS is slow), the keys in hand are used
# while they have this long left, and the source is asked again this much later, not at every request.
STILL_USABLE = 60
REFRESH_RETRY = 15


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

    def usable(self):
        return self.expires_at is None or self.expires_at - time.time() > STILL_USABLE


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


async def _fetch(method, url, headers=None, body=None, timeout=METADATA_TIMEOUT):
    """The body of a 200 answer from a metadata endpoint (or STS), or None (refused, absent, unreachable)."""
    from tornado.httpclient import (  # only when these sources are used
        AsyncHTTPClient,
        HTTPClientError,
        HTTPRequest,
    )

    if body is None and method in ("PUT", "POST"):
        body = b""
    for attempt in range(METADATA_ATTEMPTS):
        try:
            response = await AsyncHTTPClient().fetch(HTTPRequest(
                url, method=method, headers=headers, body=body,
                connect_timeout=timeout, request_timeout=timeout), raise_error=False)
        except (OSError, HTTPClientError):  # no such service here, or it did not answer in time
            continue
        if response.code == 200:
            return response.body.decode()
        if response.code < 500:
            return None
    return None


def _role_keys(document, source):
    """Credentials from the JSON document both the container and the instance endpoints answer with."""
    try:
        keys = json.loads(document)
        expires_at = datetime.fromisoformat(keys["Expiration"]).timestamp()
        return Credentials(keys["AccessKeyId"], keys["SecretAccessKey"], keys.get("Token", ""), expires_at)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CredentialsUnavailable(f"S3: the {source} credentials cannot be read: {exc!r}") from exc


async def _from_web_identity(environ):
    """The keys of the role ``AWS_ROLE_ARN`` from STS AssumeRoleWithWebIdentity (a request STS takes unsigned) with
    the token in ``AWS_WEB_IDENTITY_TOKEN_FILE``, read again at each refresh since it rotates; None when unset."""
    token_file, role = environ.get("AWS_WEB_IDENTITY_TOKEN_FILE"), environ.get("AWS_ROLE_ARN")
    if not token_file or not role:
        return None
    try:
        token = Path(token_file).read_text().strip()
    except OSError as exc:
        raise CredentialsUnavailable(f"S3: the web identity token cannot be read: {exc}") from exc
    region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    endpoint = environ.get("AWS_ENDPOINT_URL_STS") or environ.get("AWS_ENDPOINT_URL") or \
        f"https://sts.{region}.amazonaws.com"
    form = urlencode({"Action": "AssumeRoleWithWebIdentity", "Version": "2011-06-15", "RoleArn": role,
                      "RoleSessionName": environ.get("AWS_ROLE_SESSION_NAME") or "cyp-registry",
                      "WebIdentityToken": token})
    document = await _fetch("POST", endpoint, {"Content-Type": "application/x-www-form-urlencoded"}, form,
                            STS_TIMEOUT)
    if document is None:
        raise CredentialsUnavailable(f"S3: STS at {endpoint} refused or did not answer AssumeRoleWithWebIdentity "
                                     f"for {role}")
    try:
        keys = ElementTree.fromstring(document).find(f".//{STS_NAMESPACE}Credentials")
        return Credentials(*(keys.findtext(f"{STS_NAMESPACE}{name}") for name in (
            "AccessKeyId", "SecretAccessKey", "SessionToken")),
            datetime.fromisoformat(keys.findtext(f"{STS_NAMESPACE}Expiration")).timestamp())
    except (ElementTree.ParseError, AttributeError, TypeError, ValueError) as exc:
        raise CredentialsUnavailable(f"S3: the STS answer for {role} cannot be read: {exc!r}") from exc


async def _from_container_role(environ):
    """An ECS task role (or any container credentials endpoint), or None when none is named."""
    relative, full = environ.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"), \
        environ.get("AWS_CONTAINER_CREDENTIALS_FULL_URI")
    if not relative and not full:
        return None
    token = environ.get("AWS_CONTAINER_AUTHORIZATION_TOKEN")
    document = await _fetch("GET", f"{ECS_ENDPOINT}{relative}" if relative else full,
                            {"Authorization": token} if token else None)
    return None if document is None else _role_keys(document, "container role's")


async def _from_instance_role(environ):
    """The role's keys from IMDSv2 (a session token first, then the role name, then its keys), or None."""
    if environ.get("AWS_EC2_METADATA_DISABLED", "").lower() == "true":
        return None
    base = environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT", IMDS_ENDPOINT).rstrip("/")
    token = await _fetch("PUT", f"{base}/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "21600"})
    if token is None:
        return None
    headers = {"X-aws-ec2-metadata-token": token}
    roles = await _fetch("GET", f"{base}/latest/meta-data/iam/security-credentials/", headers)
    role = (roles or "").split("\n")[0].strip()
    if not role:
        return None
    document = await _fetch("GET", f"{base}/latest/meta-data/iam/security-credentials/{role}", headers)
    return None if document is None else _role_keys(document, "instance role's")


class CredentialChain:
    """The credentials of the first source that has them; ``await get()`` before each signature."""

    def __init__(self, access_key_id="", secret_access_key="", environ=None):
        self._environ = os.environ if environ is None else environ
        self._credentials = Credentials(access_key_id, secret_access_key) \
            if access_key_id and secret_access_key else None
        self._lock = asyncio.Lock()
        self._retry_at = 0.0  # after a failed refresh: when to ask the sources again

    def _current(self):
        """The keys in hand when they can be used without asking the sources now."""
        keys = self._credentials
        if keys is not None and (keys.fresh() or (keys.usable() and time.monotonic() < self._retry_at)):
            return keys
        return None

    async def get(self):
        if self._current() is not None:
            return self._credentials
        async with self._lock:  # one refresh for every request waiting on it
            if self._current() is None:
                try:
                    self._credentials = await self._resolve()
                except CredentialsUnavailable:
                    if self._credentials is None or not self._credentials.usable():
                        raise
                    self._retry_at = time.monotonic() + REFRESH_RETRY
        return self._credentials

    async def _resolve(self):
        found = _from_environment(self._environ) or await _from_web_identity(self._environ) \
            or _from_shared_files(self._environ) or await _from_container_role(self._environ) \
            or await _from_instance_role(self._environ)
        if found is None:
            raise CredentialsUnavailable("S3: no credentials (configuration, environment, web identity, shared files, "
                                         "container or instance role)")
        return found
