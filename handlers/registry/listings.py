"""Paginated listings (tags, catalog), the referrers index, and the /v2/ base endpoint."""
from urllib.parse import urlencode

from handlers.registry.base import RegistryHandler
from handlers.registry.errors import RegistryError
from services.manifests import OCI_INDEX

# Larger page sizes are served as this many (the spec lets a registry return fewer than asked).
MAX_PAGE_SIZE = 10_000


class PaginatedHandler(RegistryHandler):
    def page_request(self):
        """``(last, n)`` from the query; n is None when the client asked for everything."""
        raw = self.get_query_argument("n", None)
        if raw is None or raw == "":
            return self.get_query_argument("last", None), None
        if not (raw.isascii() and raw.isdigit()):
            raise RegistryError("PAGINATION_NUMBER_INVALID", "n must be a non-negative integer", detail={"n": raw})
        # Compared by length first: a number of thousands of digits is never converted.
        n = MAX_PAGE_SIZE if len(raw.lstrip("0")) > len(str(MAX_PAGE_SIZE)) else min(int(raw), MAX_PAGE_SIZE)
        return self.get_query_argument("last", None), n

    async def write_page(self, key, fetch, extra=None):
        last, n = self.page_request()
        items = await fetch(last, None if n is None else n + 1)
        if n is not None:
            more, items = len(items) > n, items[:n]
            if more and items:
                query = urlencode({"n": n, "last": items[-1]})
                self.set_header("Link", f'<{self.request.path}?{query}>; rel="next"')
        self.write_json({**(extra or {}), key: items})


class TagsHandler(PaginatedHandler):
    async def get(self, name):
        await self.write_page("tags", lambda last, limit: self.registry.tags(name, last, limit), {"name": name})


class CatalogHandler(PaginatedHandler):
    resource = ("registry", "catalog")

    async def get(self):
        await self.write_page("repositories", lambda last, limit: self.registry.catalog(self.user, last, limit))


class ReferrersHandler(RegistryHandler):
    async def get(self, name, digest):
        artifact_type = self.get_query_argument("artifactType", None)
        index = await self.registry.referrers(name, digest, artifact_type)
        if artifact_type:
            self.set_header("OCI-Filters-Applied", "artifactType")
        self.write_json(index, content_type=OCI_INDEX)


class BaseV2Handler(RegistryHandler):
    async def get(self):
        self.write_json({})
