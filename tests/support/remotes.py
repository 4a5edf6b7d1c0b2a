"""Real remote registries for the import tests, each its own process on a free loopback port, and pushers that
build images in any registry through the plain /v2/ API.

- DockerRegistry: Debian's reference registry (``/usr/bin/docker-registry``, CNCF distribution 2.8; on a fresh
  machine ``apt-get install docker-registry``), optionally with htpasswd (Basic) auth and schema 1 manifests.
- TlsFront: nginx terminating TLS (a fresh test CA, a certificate for IP 127.0.0.1) in front of a plain-HTTP
  registry.
- push_image, push_index, push_artifact_with_foreign_layer, push_schema1: images pushed with ``requests``, large
  layers streamed (never held in memory), with no auth, Basic auth or Docker token auth.

No pytest here: tests wrap these in fixtures. Every process started here is stopped by ``stop()``/``kill()`` and, as
a last resort, when the interpreter exits.
"""
import atexit
import base64
import datetime
import hashlib
import ipaddress
import json
import os
import re
import secrets
import subprocess
import tarfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin

import bcrypt
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from runtime.balancer import nginx_command, nginx_config
from tests.support.manifests import OCI_CONFIG, OCI_INDEX, OCI_LAYER_TAR, OCI_MANIFEST, Pushed, format_digest
from tests.support.oci_layout import RandomReader
from tests.support.processes import free_port, stop_process

DOCKER_REGISTRY = "/usr/bin/docker-registry"

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

CHUNK = 1024 * 1024


# -- processes ------------------------------------------------------------------------------------

_live = set()  # servers running, for the interpreter's exit


@atexit.register
def _stop_leftovers():
    """Last resort for a session that ended without its fixtures' teardown: kill what is still running."""
    for server in list(_live):
        server.kill()


def _spawn(command, log_path, env=None):
    with open(log_path, "ab") as log:
        return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)


def _wait_until_answering(process, url, log_path, timeout, verify=True):
    """Poll ``url`` until it answers anything (a 401 counts); raise with the log if the process exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode}: {Path(log_path).read_text()}")
        try:
            requests.get(url, timeout=2, verify=verify)
            return
        except requests.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError(f"{process.args[0]} did not answer {url} within {timeout}s: {Path(log_path).read_text()}")


class _Server:
    """A process that ``start()`` runs, ``stop()`` ends with SIGTERM and ``kill()`` with SIGKILL."""

    process = None

    def _launch(self, command, log_path, ready_url, timeout, env=None, verify=True):
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError(f"{command[0]} is already running")
        self.process = _spawn(command, log_path, env)
        _live.add(self)
        try:
            _wait_until_answering(self.process, ready_url, log_path, timeout, verify)
        except BaseException:
            self.kill()
            raise

    def stop(self):
        if self.process is not None:
            stop_process(self.process)
        _live.discard(self)

    def kill(self):
        """SIGKILL: nothing gets the chance to finish; ``start()`` brings it back on the same port and files."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        _live.discard(self)

    @property
    def running(self):
        return self.process is not None and self.process.poll() is None


# -- the reference registry -----------------------------------------------------------------------

def htpasswd_line(user, password, rounds=4):
    """An htpasswd entry with a bcrypt hash, the only kind distribution reads. The registry checks the hash on
    every request (it keeps no session), so tests use bcrypt's lowest cost."""
    return f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds)).decode()}\n"


# One Apache combined-format line of the registry's access log (the application's own log lines start with time=).
_ACCESS_LINE = re.compile(r'^\S+ \S+ \S+ \[[^\]]*\] "(\S+) (\S+) [^"]*" (\d{3}) ')


class DockerRegistry(_Server):
    """Debian's docker-registry (distribution 2.8.2) on 127.0.0.1, filesystem storage in ``workdir/storage``, its
    log (application log and access log) in ``workdir/registry.log``.

    ``htpasswd=(user, password)``: Basic auth. Distribution 2.8 serves it over plain HTTP (it only warns, in its
    documentation, to use TLS), so this server is reachable with Basic auth directly at ``url``; put a TlsFront
    before it to have the same over HTTPS.

    ``schema1=True``: ``compatibility.schema1.enabled``, so that signed schema 1 manifests can be pushed
    (push_schema1) and are then served as ``application/vnd.docker.distribution.manifest.v1+prettyjws``; without it
    a schema 1 PUT gets 500 UNKNOWN.

    Manifests may carry foreign (non-distributable) layers with http(s) URLs (``validation.manifests.urls.allow``;
    without it distribution refuses a Docker schema 2 manifest with URLs, though not an OCI one).

    What distribution 2.8 does that a client must cope with: it answers a GET of an OCI manifest whose Accept does
    not name the OCI type with 404 MANIFEST_UNKNOWN, and of a Docker schema 2 manifest without Accept by trying to
    convert it to schema 1 (400 MANIFEST_INVALID for the foreign-layer one).

    ``stop()`` then ``start()`` restarts it on the same port and storage; an upload session survives that (its
    state is signed with ``http.secret``, fixed per instance).
    """

    def __init__(self, workdir, htpasswd=None, schema1=False):
        self.workdir = Path(workdir)
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        self.htpasswd = htpasswd
        self.schema1 = schema1
        self.storage_path = self.workdir / "storage"
        self.config_path = self.workdir / "registry.yml"
        self.log_path = self.workdir / "registry.log"
        self.secret = secrets.token_hex(16)

    def _config(self):
        config = {
            "version": "0.1",
            "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": False}},
            "storage": {"filesystem": {"rootdirectory": str(self.storage_path)}, "delete": {"enabled": True},
                        "maintenance": {"uploadpurging": {"enabled": False}}},
            "http": {"addr": self.host, "secret": self.secret},
            "validation": {"manifests": {"urls": {"allow": ["^https?://"]}}},
            "compatibility": {"schema1": {"enabled": self.schema1}},
        }
        if self.htpasswd:
            htpasswd_path = self.workdir / "htpasswd"
            htpasswd_path.write_text(htpasswd_line(*self.htpasswd))
            config["auth"] = {"htpasswd": {"realm": "cyp-test-remote", "path": str(htpasswd_path)}}
        return config

    def start(self, timeout=30):
        """Start (or restart) it and wait until ``/v2/`` answers (200, or 401 with auth)."""
        self.storage_path.mkdir(parents=True, exist_ok=True)
        # JSON is YAML, and needs no quoting rules of its own.
        self.config_path.write_text(json.dumps(self._config(), indent=2))
        # REGISTRY_* variables would override the configuration (an address of theirs, say).
        env = {key: value for key, value in os.environ.items() if not key.startswith("REGISTRY_")}
        self._launch([DOCKER_REGISTRY, "serve", str(self.config_path)], self.log_path, f"{self.url}/v2/", timeout,
                     env)
        return self

    def access_log(self):
        """``(method, path, status)`` of every request answered so far, across restarts, from the access log."""
        if not self.log_path.exists():
            return []
        return [(m.group(1), m.group(2), int(m.group(3)))
                for m in map(_ACCESS_LINE.match, self.log_path.read_text(errors="replace").splitlines()) if m]

    def requests_made(self, method, path_fragment, status=None):
        """How many ``method`` requests whose path (with its query) contains ``path_fragment`` (and, when given,
        were answered with ``status``) it has logged, across restarts. A request is logged when its answer ends,
        an interrupted one included."""
        return sum(1 for m, path, code in self.access_log()
                   if m == method and path_fragment in path and (status is None or code == status))

    def log_text(self):
        return self.log_path.read_text(errors="replace")


# -- TLS ------------------------------------------------------------------------------------------

def _name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_test_ca_and_server_cert(directory):
    """A fresh CA (``ca.pem``) and a certificate it signed for IP 127.0.0.1 and localhost (``server.pem``,
    ``server.key``) in ``directory``; returns the three paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(f"CYP-Registry test CA {secrets.token_hex(4)}")
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=7))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(ca_ski, critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name("127.0.0.1")).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False),
                           critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(_pem_key(key))
    paths[2].chmod(0o600)
    return paths


def _proxy_location(upstream_host, proto, limit_rate=None):
    """nginx's location passing everything to ``upstream_host`` unbuffered both ways; ``limit_rate`` (bytes per
    second) slows each response down, so a transfer can be caught half-way. (nginx limits only buffered
    responses: they are buffered in memory, never spooled to disk, and read from the upstream at that rate too,
    so an upstream that dies breaks the transfer at once.)"""
    buffering = (f"proxy_buffering on; proxy_max_temp_file_size 0; proxy_limit_rate {limit_rate}; "
                 f"limit_rate {limit_rate};") if limit_rate else "proxy_buffering off;"
    return f"""\
        location / {{
            proxy_pass http://{upstream_host};
            proxy_http_version 1.1;
            proxy_request_buffering off;
            {buffering}
            proxy_set_header Host $http_host;
            proxy_set_header Authorization $http_authorization;
            proxy_set_header X-Forwarded-Proto {proto};
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_connect_timeout 30s;
            proxy_send_timeout 900s;
            proxy_read_timeout 900s;
        }}"""


class HttpFront(_Server):
    """nginx on http://127.0.0.1:<port> in front of ``upstream_host``: slowed by ``limit_rate`` (bytes per second),
    or answering some paths itself with ``locations`` (nginx location blocks, which win over the proxy)."""

    def __init__(self, workdir, upstream_host, limit_rate=None, locations=""):
        self.workdir = Path(workdir)
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        self.upstream_host = upstream_host
        self.limit_rate = limit_rate
        self.locations = locations
        self.config_path = self.workdir / "nginx.conf"
        self.log_path = self.workdir / "nginx.log"

    def start(self, timeout=30):
        servers = f"""\
    server {{
        listen {self.host};
        client_max_body_size 0;
        {self.locations}
{_proxy_location(self.upstream_host, "http", self.limit_rate)}
    }}"""
        (self.workdir / "temp").mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(nginx_config(self.workdir, servers))
        self._launch(nginx_command(self.workdir, self.config_path), self.log_path, f"{self.url}/v2/", timeout)
        return self


class TlsFront(_Server):
    """nginx on https://127.0.0.1:<port> with a certificate for IP 127.0.0.1 signed by its own fresh test CA
    (``ca_path``), passing every request (Host, Authorization and bodies of any size, unbuffered both ways) to
    ``http://<upstream_host>``. It sends X-Forwarded-Proto: https, so distribution builds its Location URLs on
    https://<front host>.

    One foreground nginx process (``daemon off``, ``master_process off``) run as
    ``nginx -p workdir/ -c workdir/nginx.conf -e workdir/error.log``, as the current user, every file it writes
    (pid, logs, temp) under ``workdir``: nothing under /etc/nginx or /var. The CA and certificate are made once, so
    ``stop()`` and ``start()`` again keep them and the port."""

    def __init__(self, workdir, upstream_host):
        self.workdir = Path(workdir)
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"https://{self.host}"
        self.upstream_host = upstream_host
        self.config_path = self.workdir / "nginx.conf"
        self.log_path = self.workdir / "nginx.log"
        self.ca_path, self.cert_path, self.key_path = make_test_ca_and_server_cert(self.workdir / "tls")

    def start(self, timeout=30):
        servers = f"""\
    server {{
        listen {self.host} ssl;
        ssl_certificate "{self.cert_path}";
        ssl_certificate_key "{self.key_path}";
        ssl_protocols TLSv1.2 TLSv1.3;
        client_max_body_size 0;
        client_body_timeout 900s;
        send_timeout 900s;
{_proxy_location(self.upstream_host, "https")}
    }}"""
        (self.workdir / "temp").mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(nginx_config(self.workdir, servers))
        self._launch(nginx_command(self.workdir, self.config_path), self.log_path, f"{self.url}/", timeout,
                     verify=str(self.ca_path))
        return self


# -- pushing --------------------------------------------------------------------------------------

class PushError(Exception):
    """A registry refused a step of a push; ``response`` is its answer."""

    def __init__(self, what, response):
        super().__init__(f"{what}: {response.status_code} {response.text[:500]}")
        self.response = response


_AUTH_PARAM = re.compile(r'(\w+)="([^"]*)"')


class V2Client:
    """The pushers' /v2/ client of one registry. ``auth``: ``(user, password)`` or None; ``verify``: as requests
    takes it (a CA path for a TlsFront). On a 401 it answers the challenge once: Basic with the credentials, or
    Bearer by fetching a token from the realm (service and scope as challenged, else push access to the repository)
    with the credentials; the answer is then reused for the repository, bodies streamed from generators included."""

    def __init__(self, url, auth=None, verify=True):
        self.url = url.rstrip("/")
        self.auth = auth
        self.verify = verify
        self.session = requests.Session()
        self.authorization = {}  # repository -> Authorization header value

    def close(self):
        self.session.close()

    def _basic(self):
        user, password = self.auth
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def _answer(self, challenge, repo):
        scheme, _, params = challenge.partition(" ")
        if scheme.lower() == "basic":
            return self._basic() if self.auth else None
        if scheme.lower() != "bearer":
            return None
        params = dict(_AUTH_PARAM.findall(params))
        query = {"scope": params.get("scope") or f"repository:{repo}:pull,push"}
        if "service" in params:
            query["service"] = params["service"]
        response = self.session.get(params["realm"], params=query, auth=self.auth, verify=self.verify, timeout=60)
        if response.status_code != 200:
            raise PushError(f"token from {params['realm']}", response)
        body = response.json()
        return f"Bearer {body.get('token') or body['access_token']}"

    def request(self, method, path, repo, headers=None, data=None, **kwargs):
        """``path`` relative to the registry or a whole URL (an upload Location). A body that is a generator can't
        be sent twice: authenticate with an earlier request (the upload's POST) first."""
        url = urljoin(self.url + "/", path)
        headers = dict(headers or {})
        replayable = data is None or isinstance(data, (bytes, str))
        for attempt in range(2):
            if repo in self.authorization:
                headers["Authorization"] = self.authorization[repo]
            response = self.session.request(method, url, headers=headers, data=data, verify=self.verify,
                                            allow_redirects=False, timeout=(30, 900), **kwargs)
            challenge = response.headers.get("WWW-Authenticate")
            if response.status_code != 401 or not challenge or attempt or not replayable:
                return response
            # A server may drop the connection after a 401 without saying so (CYP-Registry does, after a refused
            # upload POST): start afresh rather than reuse it.
            self.session.close()
            answer = self._answer(challenge, repo)
            if answer is None:
                return response
            self.authorization[repo] = answer
        return response

    def upload_blob(self, repo, content):
        """Upload ``content``: bytes (POST, then PUT with the body) or an iterable of byte chunks (POST, one streamed
        PATCH, then PUT with the digest computed on the way). Returns ``(digest, size)``."""
        response = self.request("POST", f"/v2/{repo}/blobs/uploads/", repo, headers={"Content-Length": "0"})
        if response.status_code != 202:
            raise PushError(f"starting an upload to {repo}", response)
        location = response.headers["Location"]
        if isinstance(content, bytes):
            digest, size, body = format_digest(hashlib.sha256(content)), len(content), content
        else:
            hasher, size = hashlib.sha256(), 0

            def hashed():
                nonlocal size
                for chunk in content:
                    hasher.update(chunk)
                    size += len(chunk)
                    yield chunk

            response = self.request("PATCH", location, repo, data=hashed(),
                                    headers={"Content-Type": "application/octet-stream"})
            if response.status_code != 202:
                raise PushError(f"streaming a blob to {repo}", response)
            location = response.headers["Location"]
            digest, body = format_digest(hasher), b""
        response = self.request("PUT", location, repo, params={"digest": digest}, data=body,
                                headers={"Content-Type": "application/octet-stream"})
        if response.status_code != 201:
            raise PushError(f"finishing the upload of {digest} to {repo}", response)
        return digest, size

    def put_manifest(self, repo, reference, body, media_type):
        """PUT the manifest bytes; returns the Docker-Content-Digest the registry answered (or None)."""
        response = self.request("PUT", f"/v2/{repo}/manifests/{reference}", repo, data=body,
                                headers={"Content-Type": media_type})
        if response.status_code != 201:
            raise PushError(f"manifest {repo}:{reference}", response)
        return response.headers.get("Docker-Content-Digest")


def tar_layer(size, seed):
    """An uncompressed tar layer, as chunks: one file ``data-<seed>.bin`` of ``size`` reproducible pseudo-random
    bytes (blob size: 512 + size rounded up to 512 + 1024)."""
    info = tarfile.TarInfo(f"data-{seed}.bin".replace("/", "_"))
    info.size, info.mtime, info.mode = size, 0, 0o644
    yield info.tobuf(format=tarfile.USTAR_FORMAT)
    reader = RandomReader(size, seed)
    while chunk := reader.read(CHUNK):
        yield chunk
    yield b"\0" * (-size % 512 + 1024)


def gzipped(chunks, uncompressed):
    """``chunks`` gzipped, reproducibly (no name, no time), as chunks; feeds what it compresses to the hashlib
    object ``uncompressed`` (for the layer's diff id)."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    for chunk in chunks:
        uncompressed.update(chunk)
        if out := compressor.compress(chunk):
            yield out
    yield compressor.flush()


def _platform(platform):
    os_name, architecture, *rest = platform
    document = {"architecture": architecture, "os": os_name}
    if rest and rest[0]:
        document["variant"] = rest[0]
    return document


def _encode(document):
    return json.dumps(document, separators=(",", ":")).encode()


def _config_blob(client, repo, platform, diff_ids, seed, media_type=OCI_CONFIG):
    config = {**_platform(platform), "created": "2024-01-01T00:00:00Z",
              "rootfs": {"type": "layers", "diff_ids": diff_ids},
              "config": {"Labels": {"org.cyp-registry.test.seed": str(seed)}}}
    body = _encode(config)
    digest, size = client.upload_blob(repo, body)
    return {"mediaType": media_type, "digest": digest, "size": size}


def _push_image(client, repo, reference, layer_sizes, seed, platform):
    layers = []
    for i, size in enumerate(layer_sizes):
        digest, blob_size = client.upload_blob(repo, tar_layer(size, f"{seed}-{i}"))
        layers.append({"mediaType": OCI_LAYER_TAR, "digest": digest, "size": blob_size})
    # Uncompressed layers: each diff id is the layer's digest.
    config = _config_blob(client, repo, platform, [layer["digest"] for layer in layers], seed)
    body = _encode({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": layers})
    digest = format_digest(hashlib.sha256(body))
    client.put_manifest(repo, reference or digest, body, OCI_MANIFEST)
    return Pushed(body, digest, OCI_MANIFEST, {blob["digest"]: blob["size"] for blob in [config, *layers]})


def push_image(url, repo, tag, layer_sizes=(1024,), auth=None, verify=True, seed=0, platform=("linux", "amd64")):
    """Push an OCI image (uncompressed tar layers, see tar_layer, reproducible from ``seed``; a config for
    ``platform`` = ``(os, architecture[, variant])``) tagged ``tag`` (None: by digest only). Returns a Pushed: the
    manifest's bytes, digest and media type, ``blobs`` ``{digest: size}`` of its config and layers."""
    client = V2Client(url, auth, verify)
    try:
        return _push_image(client, repo, tag, layer_sizes, seed, platform)
    finally:
        client.close()


@dataclass
class PushedIndex(Pushed):
    """An image index as sent; ``children``: ``{(os, architecture, variant): Pushed}``; ``blobs``: every child's."""
    children: dict = field(default_factory=dict)


DEFAULT_PLATFORMS = (("linux", "amd64", None), ("linux", "arm64", None), ("linux", "arm", "v7"))


def push_index(url, repo, tag, platforms=DEFAULT_PLATFORMS, layer_sizes=(1024, 2048), auth=None, verify=True,
               seed=0):
    """Push one image per platform (by digest, each with layers and a config of its own) and an OCI index of them
    tagged ``tag``; returns a PushedIndex."""
    client = V2Client(url, auth, verify)
    try:
        children, descriptors = {}, []
        for platform in platforms:
            platform = (tuple(platform) + (None,))[:3]
            child = _push_image(client, repo, None, layer_sizes, f"{seed}/{'/'.join(map(str, platform))}", platform)
            children[platform] = child
            descriptors.append({**child.descriptor, "platform": _platform(platform)})
        body = _encode({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors})
        digest = format_digest(hashlib.sha256(body))
        client.put_manifest(repo, tag or digest, body, OCI_INDEX)
        blobs = {blob: size for child in children.values() for blob, size in child.blobs.items()}
        return PushedIndex(body, digest, OCI_INDEX, blobs, children)
    finally:
        client.close()


@dataclass
class PushedForeign(Pushed):
    """An image with a foreign layer; ``blobs``: what was uploaded (config, normal layer); ``foreign``:
    ``{digest: size}`` of the layer that was not, ``foreign_urls`` where its manifest says it lives."""
    foreign: dict = field(default_factory=dict)
    foreign_urls: list = field(default_factory=list)


def push_artifact_with_foreign_layer(url, repo, tag, layer_size=1024, foreign_size=4096, auth=None, verify=True,
                                     seed=0, foreign_url="http://127.0.0.1:1/foreign/{digest}",
                                     media_type=DOCKER_MANIFEST):
    """Push an image whose manifest lists a normal layer (uploaded) and a foreign, non-distributable layer
    (``application/vnd.docker.image.rootfs.foreign.diff.tar.gzip`` with ``urls``, gzipped tar) that is never
    uploaded. Its manifest is a Docker schema 2 one by default (the kind foreign layers belong to; the normal layer
    is then a gzipped tar too); ``media_type`` may be OCI_MANIFEST instead (normal layer an uncompressed tar). The
    default URL is on loopback port 1, where nothing listens: a client that wrongly fetches it is refused at once
    and no name is looked up. Distribution 2.8 accepts both kinds (a DockerRegistry
    allows http(s) URLs in manifests; by default 2.8 would refuse the Docker one)."""
    client = V2Client(url, auth, verify)
    docker = media_type == DOCKER_MANIFEST
    try:
        normal_diff = hashlib.sha256()
        normal = tar_layer(layer_size, f"{seed}-normal")
        digest, size = client.upload_blob(repo, gzipped(normal, normal_diff) if docker else normal)
        layer = {"mediaType": DOCKER_LAYER if docker else OCI_LAYER_TAR, "digest": digest, "size": size}
        # The foreign layer is only described: its digest and size, never uploaded.
        foreign_diff, foreign_hasher, foreign_bytes = hashlib.sha256(), hashlib.sha256(), 0
        for chunk in gzipped(tar_layer(foreign_size, f"{seed}-foreign"), foreign_diff):
            foreign_hasher.update(chunk)
            foreign_bytes += len(chunk)
        foreign_digest = format_digest(foreign_hasher)
        urls = [foreign_url.format(digest=foreign_digest)]
        foreign = {"mediaType": DOCKER_FOREIGN_LAYER, "digest": foreign_digest, "size": foreign_bytes, "urls": urls}
        config = _config_blob(client, repo, ("linux", "amd64"),
                              [format_digest(foreign_diff), format_digest(normal_diff) if docker else digest], seed,
                              DOCKER_CONFIG if docker else OCI_CONFIG)
        body = _encode({"schemaVersion": 2, "mediaType": media_type, "config": config, "layers": [foreign, layer]})
        manifest_digest = format_digest(hashlib.sha256(body))
        client.put_manifest(repo, tag or manifest_digest, body, media_type)
        return PushedForeign(body, manifest_digest, media_type, {config["digest"]: config["size"], digest: size},
                             {foreign_digest: foreign_bytes}, urls)
    finally:
        client.close()


# -- schema 1 -------------------------------------------------------------------------------------

def _b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _libtrust_key_id(public_key):
    """libtrust's key ID: the first 240 bits of the SHA-256 of the DER public key, base32, in groups of four."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(encoded[i:i + 4] for i in range(0, len(encoded), 4))


def sign_schema1(manifest):
    """The libtrust "pretty" JWS of a schema 1 manifest (a dict without ``signatures``), as docker signed them: the
    manifest indented by three spaces, then a ``signatures`` member with one ES256 signature by a fresh key over
    the payload that the protected header's formatLength and formatTail describe."""
    payload = json.dumps(manifest, indent=3).encode()
    format_length = payload.rindex(b"}")
    format_length = len(payload[:format_length].rstrip())
    tail = payload[format_length:]
    protected = _b64url(_encode({"formatLength": format_length, "formatTail": _b64url(tail),
                                 "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}))
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.sign(f"{protected}.{_b64url(payload)}".encode(), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    numbers = key.public_key().public_numbers()
    jwk = {"crv": "P-256", "kid": _libtrust_key_id(key.public_key()), "kty": "EC",
           "x": _b64url(numbers.x.to_bytes(32, "big")), "y": _b64url(numbers.y.to_bytes(32, "big"))}
    signatures = [{"header": {"jwk": jwk, "alg": "ES256"},
                   "signature": _b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big")), "protected": protected}]
    signed = json.dumps(signatures, indent=3).replace("\n", "\n   ")
    return payload[:format_length] + b',\n   "signatures": ' + signed.encode() + b"\n}"


def push_schema1(url, repo, tag, layer_sizes=(1024,), auth=None, verify=True, seed=0):
    """Push layers and a signed Docker schema 1 manifest (``application/vnd.docker.distribution.manifest.v1+
    prettyjws``) for them tagged ``tag``, into a DockerRegistry started with ``schema1=True`` (others refuse it).
    Returns a Pushed: the signed bytes, the digest the registry answered, ``blobs`` the layers.

    Distribution 2.8 then serves the manifest whatever the Accept (an OCI-only one included), re-signed with its own
    key on every GET: the bytes differ from one GET to the next and from what was pushed. Its Docker-Content-Digest
    (the same for PUT, HEAD and GET, and the digest to GET it by) is the SHA-256 of the unsigned payload, the
    served bytes up to the protected header's formatLength followed by its formatTail, not of the bytes served."""
    client = V2Client(url, auth, verify)
    try:
        layers, parent = [], None
        history = []
        for i, size in enumerate(layer_sizes):
            digest, blob_size = client.upload_blob(repo, tar_layer(size, f"{seed}-{i}"))
            layers.append((digest, blob_size))
            layer_id = hashlib.sha256(f"{parent}{digest}".encode()).hexdigest()
            v1 = {"id": layer_id, "created": "2024-01-01T00:00:00Z"}
            if parent:
                v1["parent"] = parent
            if i == len(layer_sizes) - 1:
                v1.update({"architecture": "amd64", "os": "linux", "config": {"Labels": {"seed": str(seed)}}})
            history.append({"v1Compatibility": json.dumps(v1, separators=(",", ":"))})
            parent = layer_id
        # Schema 1 lists the newest layer first.
        manifest = {"schemaVersion": 1, "name": repo, "tag": tag, "architecture": "amd64",
                    "fsLayers": [{"blobSum": digest} for digest, _ in reversed(layers)],
                    "history": list(reversed(history))}
        body = sign_schema1(manifest)
        digest = client.put_manifest(repo, tag, body, SCHEMA1_SIGNED)
        return Pushed(body, digest, SCHEMA1_SIGNED, dict(layers))
    finally:
        client.close()
