"""/api/v1/openapi.json and /api/v1/docs: this API's OpenAPI document and its reference page, public like any
published specification (apidoc/)."""
# Modules, not names: apidoc.document reads the error table of this package, so either may be imported first.
from apidoc import document as openapi_document
from apidoc import html as reference_page
from handlers.api.base import ApiHandler


class OpenApiHandler(ApiHandler):
    auth_required = False

    async def get(self):
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(openapi_document.document_bytes())


class ApiReferencePageHandler(ApiHandler):
    auth_required = False

    async def get(self):
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.set_header("Content-Security-Policy", reference_page.CONTENT_SECURITY_POLICY)
        self.finish(reference_page.page_bytes())
