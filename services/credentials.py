"""Credentials kept at rest (a remote registry's password while an import may still need it),
encrypted with AES-256-GCM under a key that never lives in the database.

The key is the ``credentials_key`` setting (32 bytes, base64), the same on every node of a
cluster; without it, ``<data-dir>/credentials.key`` is created once (mode 0600), which serves one
node and its workers. The record is bound to its task (associated data), so a ciphertext copied
onto another task does not decrypt.
"""
import base64
import binascii
import json
import os
from pathlib import Path

from bson import Binary

from storage.directories import fsync_dir

KEY_BYTES = 32
NONCE_BYTES = 12


class CredentialsUnavailable(Exception):
    """The stored credentials cannot be read with this node's key."""


def load_key(config):
    if config["credentials_key"]:
        try:
            key = base64.b64decode(config["credentials_key"], validate=True)
        except binascii.Error:
            key = b""
        if len(key) != KEY_BYTES:
            raise ValueError("credentials_key must be 32 bytes in base64 (e.g. `openssl rand -base64 32`)")
        return key
    path = Path(config["data_dir"]) / "credentials.key"
    key = _created_once(path, os.urandom(KEY_BYTES))
    if len(key) != KEY_BYTES:
        raise ValueError(f"{path} holds {len(key)} bytes, not a key of {KEY_BYTES}: restore it, or remove it if "
                         "no credentials were ever stored with it")
    return key


def _created_once(path, data):
    """The content of ``path``, written as ``data`` when it does not exist yet. Never a part of it: the file is
    written whole and made durable under a name of its own, then linked into place (a link fails where the name
    exists), so workers starting together all read the one key the first of them wrote."""
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}")
    with open(os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    try:
        os.link(draft, path)
        fsync_dir(path.parent)
    except FileExistsError:
        pass
    finally:
        os.unlink(draft)
    return path.read_bytes()


class CredentialBox:
    """AES-256-GCM under one key; the cipher library is loaded when something is first sealed or opened."""

    def __init__(self, key):
        self.key = key
        self._aead = None

    @property
    def aead(self):
        if self._aead is None:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
            self._aead = AESGCM(self.key)
        return self._aead

    def seal(self, credentials, bound_to):
        nonce = os.urandom(NONCE_BYTES)
        sealed = self.aead.encrypt(nonce, json.dumps(credentials).encode(), bound_to.encode())
        return {"nonce": Binary(nonce), "sealed": Binary(sealed)}

    def open(self, record, bound_to):
        from cryptography.exceptions import InvalidTag

        try:
            plain = self.aead.decrypt(bytes(record["nonce"]), bytes(record["sealed"]), bound_to.encode())
        except (InvalidTag, KeyError, TypeError):
            raise CredentialsUnavailable("the stored credentials cannot be decrypted with this node's key "
                                         "(give every node the same credentials_key)") from None
        return json.loads(plain)
