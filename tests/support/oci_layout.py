"""Builds OCI image layouts on disk (the source for skopeo and podman pushes), streaming large layers."""
import hashlib
import io
import json
import os
import random
import tarfile
from pathlib import Path

from tests.support.manifests import OCI_CONFIG, OCI_LAYER_TAR, OCI_MANIFEST, format_digest


class RandomReader(io.RawIOBase):
    """``size`` reproducible pseudo-random bytes, produced as they are read."""

    def __init__(self, size, seed):
        self.remaining = size
        self.random = random.Random(seed)

    def readable(self):
        return True

    def readinto(self, buffer):
        n = min(len(buffer), self.remaining)
        buffer[:n] = self.random.randbytes(n)
        self.remaining -= n
        return n


class HashingWriter(io.RawIOBase):
    def __init__(self, out):
        self.out = out
        self.hasher = hashlib.sha256()
        self.size = 0

    def writable(self):
        return True

    def write(self, data):
        self.hasher.update(data)
        self.size += len(data)
        return self.out.write(data)


def _write_blob(blobs, data):
    hasher = hashlib.sha256(data)
    (blobs / hasher.hexdigest()).write_bytes(data)
    return {"digest": format_digest(hasher), "size": len(data)}


def _write_tar_layer(blobs, size, seed):
    """A tar layer holding one file of ``size`` random bytes; returns its descriptor and diff id."""
    tmp = blobs / f"tmp-{seed}"
    with open(tmp, "wb") as raw:
        out = HashingWriter(raw)
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            info = tarfile.TarInfo(f"data-{seed}.bin")
            info.size = size
            tar.addfile(info, io.BufferedReader(RandomReader(size, seed), 1024 * 1024))
    os.replace(tmp, blobs / out.hasher.hexdigest())
    return {"mediaType": OCI_LAYER_TAR, "digest": format_digest(out.hasher), "size": out.size}


def make_image_layout(path, layer_sizes, tag="v1", seed=0):
    """An OCI layout at ``path`` holding one image tagged ``tag``; returns its manifest descriptor."""
    root = Path(path)
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    (root / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    layers = [_write_tar_layer(blobs, size, f"{seed}-{i}") for i, size in enumerate(layer_sizes)]
    # Layers are uncompressed, so each diff id is the layer digest itself.
    config = {"architecture": "amd64", "os": "linux",
              "rootfs": {"type": "layers", "diff_ids": [layer["digest"] for layer in layers]},
              "config": {"Labels": {"seed": str(seed)}}}
    config_desc = dict(_write_blob(blobs, json.dumps(config).encode()), mediaType=OCI_CONFIG)
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config_desc, "layers": layers}
    manifest_desc = dict(_write_blob(blobs, json.dumps(manifest).encode()), mediaType=OCI_MANIFEST,
                         annotations={"org.opencontainers.image.ref.name": tag})
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [manifest_desc]}))
    return manifest_desc
