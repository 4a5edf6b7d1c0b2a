"""The /api/v1 reference: the OpenAPI 3.1 document (apidoc/document.py), built from the table of operations
(apidoc/operations.py) and the JSON Schemas the server validates with (schemas/api/), and the two renderings
of it: docs/api.md (apidoc/markdown.py) and the page served at /api/v1/docs (apidoc/html.py)."""
