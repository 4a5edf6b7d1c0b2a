"""The reference page served at /api/v1/docs: docs/api.md's Markdown (apidoc/markdown.py) rendered to HTML on
the server. No script and nothing from another origin, so it reads offline and under a strict
Content-Security-Policy that allows only its own inline style (by hash)."""
import base64
import functools
import hashlib
import html

from markdown_it import MarkdownIt

from apidoc import document as openapi_document
from apidoc.markdown import anchor, render

STYLE = """
body{font:15px/1.5 system-ui,sans-serif;max-width:72rem;margin:0 auto;padding:1rem 2rem;color:#1b1f24}
h1,h2{border-bottom:1px solid #d0d7de;padding-bottom:.2em}h3{margin-top:2em}
code,pre{font-family:ui-monospace,monospace;font-size:90%;background:#f3f4f6;border-radius:4px}
code{padding:.1em .3em}pre{padding:.8em;overflow:auto}pre code{padding:0;background:none}
table{border-collapse:collapse;margin:.8em 0;display:block;overflow:auto}
th,td{border:1px solid #d0d7de;padding:.3em .6em;text-align:left;vertical-align:top}th{background:#f6f8fa}
a{color:#0a58ca}
"""


def _heading_ids(state):
    """Each heading gets the id GitHub gives it, so the Markdown's own links work on the page too."""
    tokens = state.tokens
    for index, token in enumerate(tokens):
        if token.type == "heading_open":
            token.attrSet("id", anchor("".join(child.content for child in tokens[index + 1].children or ())))


def style_source():
    """The Content-Security-Policy source that admits the page's one inline style and nothing else."""
    digest = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
    return f"'sha256-{digest}'"


CONTENT_SECURITY_POLICY = (f"default-src 'none'; style-src {style_source()}; img-src 'none'; base-uri 'none'; "
                           "form-action 'none'; frame-ancestors 'none'")


@functools.cache
def page_bytes():
    parser = MarkdownIt("commonmark", {"html": False}).enable("table")
    parser.core.ruler.push("heading_ids", _heading_ids)
    document = openapi_document.build_document()
    body = parser.render(render(document, notice=False))
    title = html.escape(f"{document['info']['title']} {document['info']['version']}")
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{title}</title><style>{STYLE}</style></head>\n<body>\n{body}</body></html>\n").encode()
