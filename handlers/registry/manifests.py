"""Manifests by tag or digest: GET/HEAD with Accept negotiation, PUT (byte-exact, optionally tagged
with ``?tag=``), DELETE."""
import tornado.web

from handlers.base import BoundedBody
from handlers.registry.base import RegistryHandler
from handlers.registry.errors import RegistryError
from services.audit import PULL
from services.manifests import MAX_MANIFEST_BYTES, accepts


def _too_large():
    return RegistryError("SIZE_INVALID", f"manifest exceeds the limit of {MAX_MANIFEST_BYTES} bytes",
                         detail={"limit": MAX_MANIFEST_BYTES}, status=413)


@tornado.web.stream_request_body
class ManifestHandler(RegistryHandler):
    # A HEAD (an existence check) is not a pull; blob reads are parts of the pull its manifest GET records.
    audited = {"GET": PULL, "PUT": "artifact.push"}

    def audit_operation(self):
        if self.request.method == "DELETE":
            # A reference without a colon is a tag: deleting it leaves the manifest.
            return "artifact.delete" if ":" in self.path_kwargs.get("reference", "") else "tag.delete"
        return super().audit_operation()

    async def prepare(self):
        self.body = BoundedBody(MAX_MANIFEST_BYTES)
        await super().prepare()
        if self.request.method == "PUT":
            length = self.request.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > MAX_MANIFEST_BYTES:
                raise _too_large()
            self.request.connection.set_max_body_size(1 << 40)

    def data_received(self, chunk):
        self.body.feed(chunk)

    async def head(self, name, reference):
        await self.get(name, reference, send_body=False)

    async def get(self, name, reference, send_body=True):
        doc = await self.registry.manifest(name, reference, with_content=send_body)
        if not accepts(self.request.headers.get("Accept"), doc["media_type"]):
            raise RegistryError("MANIFEST_UNKNOWN",
                                f"manifest is {doc['media_type']}, which the Accept header excludes",
                                detail={"media_type": doc["media_type"]})
        self.set_header("Content-Type", doc["media_type"])
        self.set_header("Docker-Content-Digest", doc["digest"])
        self.set_header("ETag", f'"{doc["digest"]}"')
        self.set_header("Content-Length", doc["size"])
        if send_body:
            self.write(bytes(doc["content"]))
        self.finish()
        if send_body:
            self.services.pulls.record(doc, name, reference, self.operator)

    async def put(self, name, reference):
        if self.body.oversize:
            raise _too_large()
        tag_params = self.get_query_arguments("tag")
        parsed, tags = await self.registry.put_manifest(name, reference, bytes(self.body),
                                                        self.request.headers.get("Content-Type"), tag_params,
                                                        operator=self.operator)
        if tag_params:
            for tag in tags:
                self.add_header("OCI-Tag", tag)
        headers = {"Location": f"/v2/{name}/manifests/{parsed.digest}", "Docker-Content-Digest": parsed.digest}
        if parsed.subject:
            headers["OCI-Subject"] = parsed.subject
        self.finish_empty(201, headers)

    async def delete(self, name, reference):
        await self.registry.delete_manifest(name, reference, operator=self.operator)
        self.finish_empty(202)
