"""The BlobStore contract every storage backend implements.

An upload is resumable across requests and nodes: its backend state is a small dict kept in
the upload's MongoDB document. A committed blob is addressed by the ``ref`` dict that
``commit`` returns, which the blob's document keeps. Every commit gets data of its own, even for
a digest stored before: ``delete(ref)`` can never remove bytes another ref still points at, and
duplicates are dropped by the caller (one blob document per digest).
"""
import contextlib
import functools
from abc import ABC, abstractmethod


class StorageUnavailable(Exception):
    """The backend cannot be reached or refused the operation."""


@contextlib.contextmanager
def unavailable_on(backend, *kinds):
    """Turn the backend's own exceptions (``kinds``) into StorageUnavailable, inside a block."""
    try:
        yield
    except kinds as exc:
        raise StorageUnavailable(f"{backend}: {exc}") from exc


def raises_unavailable(backend, *kinds):
    """The same for a whole coroutine function."""
    def decorate(func):
        @functools.wraps(func)
        async def wrapper(*args, **kwargs):
            with unavailable_on(backend, *kinds):
                return await func(*args, **kwargs)
        return wrapper
    return decorate


class UploadWriter(ABC):
    """Appends bytes to one upload; lives for one request."""

    pending = None  # a write still in flight, when the writer overlaps them with the next bytes

    async def discard(self):
        """End a request that will not checkpoint: let its write in flight land first, so it cannot
        race the next request's writer (which drops everything past the last checkpoint)."""
        if self.pending is not None:
            pending, self.pending = self.pending, None
            with contextlib.suppress(Exception):
                await pending

    @abstractmethod
    async def write(self, data):
        """Append ``data``; awaiting it is the request's backpressure."""

    @abstractmethod
    async def checkpoint(self):
        """Make everything written durable and return the state to resume from."""

    @abstractmethod
    async def commit(self, digest):
        """Finish the upload as the blob ``digest``; return the blob's ref."""


class BlobStore(ABC):
    name = "abstract"
    keeps_files = False  # each blob as a file of its own on a local filesystem (see open_file)

    @abstractmethod
    async def ensure_ready(self):
        """Prepare the backend at start, on the running loop (indexes, bucket, directories)."""

    async def close(self):
        """Release connections at shutdown."""

    @abstractmethod
    def new_upload_state(self):
        """The state of an empty upload."""

    @abstractmethod
    async def open_writer(self, state):
        """A writer continuing the upload described by ``state``."""

    @abstractmethod
    async def abort(self, state):
        """Discard an unfinished upload's data, including what a request wrote past its last
        checkpoint; doing it twice is harmless."""

    @abstractmethod
    def read(self, ref, start, length):
        """Async iterator over ``length`` bytes of the blob from offset ``start``."""

    async def open_file(self, ref, size):
        """An open descriptor of the blob's own file, which the caller closes, for the server to send by the
        kernel; only for a backend that ``keeps_files``. A file holding fewer than ``size`` bytes is refused
        (StorageUnavailable) here: once the kernel sends from it, the response's headers are out, and a short
        file could only cut the response short instead of being answered as an error."""
        raise NotImplementedError

    async def redirect_url(self, ref, digest):
        """A URL the client may fetch the blob from directly, or None to stream it through the registry."""
        return None

    @abstractmethod
    async def delete(self, ref):
        """Remove a committed blob's data; doing it twice is harmless."""

    @abstractmethod
    async def ping(self):
        """Raise StorageUnavailable when the backend cannot serve."""
