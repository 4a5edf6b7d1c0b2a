"""Blob uploads: start (monolithic, session or cross-repository mount), PATCH chunks, PUT to finish, status, cancel."""
import tornado.ioloop
import tornado.web

from handlers.registry.base import UNLIMITED_BODY, RegistryHandler
from handlers.registry.errors import RegistryError
from services.digests import parse_digest
from services.metrics import UPLOADS_IN_PROGRESS
from services.ranges import parse_content_range
from services.uploads import range_header


def upload_location(name, upload_id):
    return f"/v2/{name}/blobs/uploads/{upload_id}"


class StreamingUploadMixin:
    """Streams a request body into an UploadSession; storage errors are kept until the method runs."""

    session = None
    stream_error = None
    # Counted in cyp_uploads_in_progress from start_streaming until the request ends.
    streaming = False
    # A monolithic upload has no session the client could resume: a failure discards its data.
    discard_on_failure = False
    audited = {"POST": "blob.upload", "PATCH": "blob.upload", "PUT": "blob.upload"}

    def audit_operation(self):
        # A pushed image is recorded once, by its manifest; an upload only when it is refused or fails.
        return super().audit_operation() if self.get_status() >= 400 else None

    def content_length(self):
        length = self.request.headers.get("Content-Length", "")
        return int(length) if length.isascii() and length.isdigit() and len(length) < 20 else None

    async def precheck_quota(self, size_so_far, digest=None):
        """With Content-Length known up front, refuse before reading a body that could not fit."""
        length = self.content_length()
        if length:
            await self.registry.precheck(self.repo, size_so_far + length, digest)

    def start_streaming(self, session):
        self.session = session
        self.request.connection.set_max_body_size(UNLIMITED_BODY)
        self.streaming = True
        UPLOADS_IN_PROGRESS.inc()

    async def data_received(self, chunk):
        if self.session is None or self.stream_error is not None:
            return
        try:
            await self.session.write(chunk)
        except Exception as exc:  # raised from the handler method, where errors are answered
            self.stream_error = exc

    def raise_stream_error(self):
        if self.stream_error is not None:
            raise self.stream_error

    def release_session(self):
        """Give back the lease of a request that did not save its session (an error, or the client left)."""
        if self.streaming:
            self.streaming = False
            UPLOADS_IN_PROGRESS.dec()
        if self.session is not None:
            session, self.session = self.session, None
            give_back = session.abort if self.discard_on_failure else session.release
            tornado.ioloop.IOLoop.current().add_callback(give_back)

    def on_finish(self):
        super().on_finish()
        self.release_session()

    def on_connection_close(self):
        super().on_connection_close()
        self.release_session()

    def answer_created(self, name, digest):
        self.session = None
        self.finish_empty(201, {"Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": digest})

    def answer_progress(self, name, upload_id, size, status=202):
        self.finish_empty(status, {"Location": upload_location(name, upload_id), "Docker-Upload-UUID": upload_id,
                                   "Range": range_header(size)})


@tornado.web.stream_request_body
class UploadStartHandler(StreamingUploadMixin, RegistryHandler):
    discard_on_failure = True

    def mount_source(self):
        """The repository a cross-repository mount (``?mount=&from=``) takes its blob from, or None."""
        if self.get_query_argument("mount", None):
            return self.get_query_argument("from", None)
        return None

    def challenge_scopes(self):
        # Ask for the mount's source too, so a client that may pull it gets a token that mounts (201).
        source = self.mount_source()
        return super().challenge_scopes() + ([f"repository:{source}:pull"] if source else [])

    async def prepare(self):
        await super().prepare()
        self.mounted = None
        mount = self.get_query_argument("mount", None)
        if mount and await self.registry.mount_blob(self.caller, self.repo, mount, self.mount_source()):
            self.mounted = mount
            return
        await self.registry.project_of(self.repo)
        digest = self.get_query_argument("digest", None)
        if digest:
            algorithm, _ = parse_digest(digest)
            await self.precheck_quota(0, digest)
            doc = await self.uploads.start(self.repo, algorithm)
            self.start_streaming(await self.uploads.open(self.repo, doc["_id"], start=0))

    async def post(self, name):
        if self.mounted:
            return self.answer_created(name, self.mounted)
        if self.session is not None:
            self.raise_stream_error()
            digest = self.get_query_argument("digest")
            await self.session.finish(digest)
            return self.answer_created(name, digest)
        doc = await self.uploads.start(name)
        self.answer_progress(name, doc["_id"], 0)


@tornado.web.stream_request_body
class UploadHandler(StreamingUploadMixin, RegistryHandler):
    async def prepare(self):
        await super().prepare()
        if self.request.method not in ("PATCH", "PUT"):
            return
        start = self.claimed_start()
        session = await self.uploads.open(self.repo, self.path_kwargs["upload_id"], start=start)
        self.start_streaming(session)
        await self.precheck_quota(session.size)

    def claimed_start(self):
        """The offset a PATCH's (or closing PUT's) Content-Range claims, checked against Content-Length."""
        return parse_content_range(self.request.headers.get("Content-Range"), self.content_length())

    async def get(self, name, upload_id):
        doc = await self.uploads.status(name, upload_id)
        self.answer_progress(name, upload_id, doc["size"], status=204)

    async def patch(self, name, upload_id):
        self.raise_stream_error()
        size = await self.session.save()
        self.session = None
        self.answer_progress(name, upload_id, size)

    async def put(self, name, upload_id):
        digest = self.get_query_argument("digest", None)
        if not digest:
            raise RegistryError("DIGEST_INVALID", "the digest query parameter is required to finish an upload")
        self.raise_stream_error()
        await self.session.finish(digest)
        self.answer_created(name, digest)

    async def delete(self, name, upload_id):
        await self.uploads.cancel(name, upload_id)
        self.finish_empty(204)

    def required_action(self):
        # Cancelling an upload is part of pushing, not a delete of stored content.
        return "push"
