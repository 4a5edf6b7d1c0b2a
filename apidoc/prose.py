"""The reference's prose that belongs to no single operation: the document's description (conventions,
authentication, the envelope, errors, the password rule, scopes) and each tag's, the registry's token endpoint
and /v2/ included. Markdown (CommonMark with tables), as OpenAPI descriptions are."""

TITLE = "CYP-Registry API"

# What each envelope code is used for, beside its status and default message (handlers/api/errors.py).
CODE_USES = {
    20000: "success",
    10001: "invalid parameter; the message names the field",
    10002: "the body is not JSON in UTF-8, or is missing",
    10003: "the body is over 256 KiB; an avatar is over `avatar_max_bytes`",
    20001: "no such user, project, PAT or endpoint; a private project the caller may not see gives 20001 too",
    20002: "username or project name taken; project still holds images; last administrator",
    20003: "retired project-members API; default-admin hint already shown",
    20004: "the route exists but not with this method (checked after authentication)",
    30001: "no token sent; wrong username or password",
    30002: "invalid, expired or revoked token; ended session; the account no longer exists",
    30003: "not an administrator; not the project's owner; missing PAT scope; account disabled; wrong "
           "`old_password`",
    30004: "too many failed logins, counted per user and per address and shared by every node; or too many "
           "requests (the rate limits: per user, per address for anonymous callers; README *Rate limits*), with "
           "`Retry-After`",
    50001: "unexpected failure; quote the `trace_id` when reporting it",
    50003: "database or blob store unavailable (sent with `Retry-After: 5`)",
}

INTRO = """\
The management API of CYP-Registry under `/api/v1`. This document is generated from the server's own OpenAPI
document (`GET /api/v1/openapi.json`, also readable at `/api/v1/docs`); the request bodies are the JSON Schemas
the server validates with (`schemas/api/`), the answers those of `schemas/api/responses/`.

## Basics

### Base URL and formats

- Base URL: `/api/v1` (for example `http://registry.example.com:5000/api/v1`).
- Request and response bodies are JSON in UTF-8 (`Content-Type: application/json; charset=UTF-8`). The
  exceptions are avatar upload and download (raw image bytes), this document and its page.
- Times inside `data` are RFC 3339 in UTC with a `Z` and milliseconds (`"2026-02-01T08:30:00.192Z"`). The
  envelope's `timestamp` and the login answer's `expires_at` / `refresh_expires_at` are Unix seconds.
- User and project ids are UUIDs (`"ecf74457-a496-40b5-b871-e77eeddb51fd"`). PAT ids and session ids are 32
  hexadecimal characters.

### Authentication

Send `Authorization: Bearer <token>`. The token is one of two kinds:

| kind | how to get it | lifetime | scopes |
|---|---|---|---|
| session access token (a JWT) | `POST /api/v1/auth/login`, renewed with `POST /api/v1/auth/refresh` | `api_access_token_ttl_seconds` (default 1 h); the session lasts `api_refresh_token_ttl_seconds` (default 7 days) from the last refresh | all scopes |
| personal access token (PAT), `cyp_…` | `POST /api/v1/users/me/pat` | until its `expires_at`, or until revoked | the scopes chosen at creation |

- A `GET` or `HEAD` request needs the `api:read` scope, every other method `api:write`. Session tokens have
  both. A PAT without the scope gets 30003 `token lacks the api:read scope`.
- Some `GET` routes also accept anonymous callers (marked *anyone; a token sent must be valid*): the project
  list, a project, statistics, storage, and a project's repositories and tags. An anonymous caller sees public
  projects only. An `Authorization` header sent must be valid, even there.
- On every request the server looks the account up again: a deleted account gets 30002, a disabled one 30003.
  A revoked or expired PAT and an ended session get 30002.

### The envelope

Every `/api/v1` answer, success or error, is this object (the `Envelope` schema); the exceptions are avatar
images, this document and its page.

```json
{"code": 20000, "message": "success", "data": {"...": "..."}, "timestamp": 1795984184, "trace_id": "15eba921aab34a6c"}
```

- `code` is `20000` on success. On error it is one of the codes below, `data` is `null`, and `message` says
  what went wrong. Field errors name the field (`unknown field displayname`, `events.push must be of type
  boolean`), never echoing its value.
- The HTTP status follows `code`.
- `trace_id` is also sent as the `X-Trace-Id` header and appears in every server log line of the request.
  Clients may send `X-Request-Id: <8–64 characters of [A-Za-z0-9_-]>`, which the server then uses as the trace
  id; any other value is ignored and a 16-character id generated. `/health`, `/auth/token` and `/v2/` set
  `X-Trace-Id` too.
- Every `/api/v1` answer carries `Cache-Control: no-store` and no `ETag`, because answers hold tokens, one-time
  passwords and private data; avatar images are sent with `Cache-Control: private, max-age=300` and
  `ETag: "sha256:…"`.

### Request bodies

- A request body is JSON, checked against its schema in `schemas/api/` (JSON Schema 2020-12).
- Unknown fields are refused (`10001 unknown field <name>`), and so are wrong types, strings outside their
  length limits and numbers outside their range.
- Send integers as plain integers (`1000`, not `1000.0` or `1e3`): no field takes a fraction or an exponent.
  `NaN` and `Infinity` are not JSON and get 10002, as does text that is not valid UTF-8 or holds lone surrogate
  escapes.
- A body the route needs that is missing or `null` gets `10002 a JSON body is required`.
- A body larger than 256 KiB (262144 bytes) is read and thrown away, and the answer is
  `10003 request body exceeds 262144 bytes` (HTTP 413). Avatar upload has its own limit.

### Pagination

Paged lists take `page` (1 … 1000000, default 1) and `page_size` (1 … 100, default 20). Any other value,
a non-digit or a number outside the range included, gets `10001 page must be an integer from 1 to 1000000`
(or the same for `page_size`). Their `data` is `{"items": [...], "total": 42, "page": 1, "page_size": 20}`;
`total` counts every match, not only this page's.

### Errors common to every route

Each operation lists its own errors. These can happen on any route:

| code | when |
|---|---|
| 30001 | the route needs a token and there is no `Authorization: Bearer …` header |
| 30002 | the token is malformed, expired, or signed with another key; the session was ended (logout, refresh-token reuse, password change, disabled account); the PAT was revoked or has expired; the account no longer exists |
| 30003 | the account is disabled; a PAT lacks `api:read` / `api:write`; the route is for administrators only |
| 20004 | the route exists but not with this method (checked after authentication) |
| 10001 / 10002 / 10003 | a route that takes a body received a bad one; a query parameter is out of its range |
| 50003 | the database or the blob store cannot be reached; the answer carries `Retry-After: 5` |
| 30004 | the caller's rate limit is spent (README *Rate limits*); the answer carries `Retry-After` |
| 50001 | any other server failure; quote the `trace_id` when reporting it |

Any other path under `/api/` answers `20001 no such endpoint: <METHOD> <path>` (HTTP 404) in the envelope, and so
does any path outside `/api/`, `/v2/`, `/auth/token`, the health and metrics routes and the web console (`/`,
`/favicon.ico`, `/console/…`).

## Error codes

The table of `handlers/api/errors.py`; the default message is what the server sends when it has nothing more
specific to say.

{error_table}

## Password rule

Applies when an administrator creates a user or sets a password, and when users change their own
(`services/passwords.py`):

- at least 8 characters (and at most 256, per the schemas);
- characters from at least three of four kinds: lowercase letters, uppercase letters, digits, symbols (any
  character that is not a letter or digit);
- must not contain the username, compared without regard to case.

Messages: `password must be at least 8 characters`, `password must mix at least three of: lowercase,
uppercase, digits, symbols`, `password must not contain the username`, prefixed with `new_password: ` or
`password: ` where the endpoint names the field. Passwords are stored as argon2id hashes. Avoid a password
starting with `cyp_`: at login it is taken for a personal access token, so it never works as a password.

## Personal access token scopes

| scope | what it allows |
|---|---|
| `api:read` | `GET` (and `HEAD`) on `/api/v1` |
| `api:write` | every other method on `/api/v1`, except creating PATs, which needs a password login (a session) |
| `registry:pull` | pull: `GET`/`HEAD` of manifests, blobs, tags and referrers, and the catalog |
| `registry:push` | pull and push: blob uploads (cancelling one included) and manifest `PUT`; it never deletes |
| `registry:delete` | `DELETE` of manifests, tags and blobs under `/v2/`, and of repositories and tags under `/api/v1` (with `api:write`); delete only: add `registry:pull` if the client also reads |

- The `api:*` scopes apply when the PAT is a Bearer token on `/api/v1`; the `registry:*` scopes when it is the
  password of `docker login`, skopeo, podman, oras or `/auth/token`, where the registry issues a short-lived
  token limited to those actions.
- A PAT never adds rights: it only narrows what its owner may do on each project. A session holds all five
  scopes.
- A registry token issued from a PAT stops working as soon as the PAT is revoked or expires, or the account is
  disabled or deleted.

## Who may call

Each operation says who may call it: **anyone** (no token needed), **anyone; a token sent must be valid**
(anonymous callers see public projects only), **user** (any logged-in account), **session** (an account logged
in with its password, not a PAT), **owner** (the project's owner or an administrator), **admin**
(administrators only). A public project is visible to everyone; a private one only to its owner and to
administrators: for everyone else it does not exist (20001, never 30003). `{project_id}` accepts the project's
id or its name."""

TAGS = (
    ("auth", "Logins and sessions", "Sessions: login, refresh, logout, and the first administrator's one-time hint."),
    ("account", "Your account", "The calling account (`/users/me`) and avatars. Every route acts on the caller."),
    ("pats", "Personal access tokens", "Tokens for scripts and registry clients; the secret is shown once."),
    ("users", "User administration", "Administrators only: a non-administrator gets `30003 administrator rights "
                                     "required`."),
    ("projects", "Projects", """\
A project is the first component of every repository name (`<project>/<repository>`); a push needs its project
to exist. `GET /api/v1/projects/statistics` is always the statistics route, so a project named `statistics`
must be addressed by its id.

- `storage_quota` is in bytes, `-1` unlimited. `storage_used` is in bytes: a blob counts once per project
  however many repositories link it; each manifest counts its own size.
- `image_count` is the number of stored manifests: images, indexes and artifacts such as signatures."""),
    ("repositories", "Repositories and tags", """\
What a project holds, without speaking `/v2/`. `{repository}` is the path inside the project (`app` for
`team-a/app`, `app/backend` for `team-a/app/backend`).

- **Slashes in `{repository}`** may be sent as they are (`/repositories/app/backend/tags`) or encoded as `%2F`
  (`/repositories/app%2Fbackend/tags`); both reach the same repository. A path with a component named `tags`
  must be sent encoded: `/repositories/app/tags/v1` is tag `v1` of `app`. A proxy in front of the server must
  pass `%2F` through undecoded (nginx: `proxy_pass` without a URI part).
- **Who**: reads follow the project's visibility; deletes need what a `/v2/` delete needs, the project's owner
  or an administrator.
- **Scopes**: reads need `api:read`. A delete needs `api:write` **and** `registry:delete`, as the same delete
  under `/v2/` does; a session holds both.
- **Pulls**: `pull_count` counts manifest `GET`s under `/v2/` (not `HEAD`); `last_pulled_at` is a tag's last
  pull (by tag, or by the digest it points to). Both are written in batches about a second after the pulls."""),
    ("imports", "Image import", """\
A task copies an image from another registry into the project (the README's *Image import* says how). Only the
project's owner or an administrator may create, list, read or cancel tasks: for a public project others get
30003, for a private one 20001."""),
    ("webhooks", "Webhooks", """\
A webhook belongs to a project (its owner manages it; administrators too) or, with `project_id` null, to every
project (administrators only). Other users' webhooks answer 20001. Every payload is
`{id, type, occurred_at, operator, data}`, `data` by type:

| type | data |
|---|---|
| `PUSH_ARTIFACT` | `project {id,name}`, `repository`, `tags`, `digest`, `media_type`, `size`, `artifact_type`?, `children`? (an index), `subject`? |
| `PULL_ARTIFACT` | `project`, `repository`, `reference` (tag or digest), `digest`, `media_type`, `count`, `first_pulled_at`, `last_pulled_at`: the identical pulls (same operator, reference and digest) of one second are one event |
| `DELETE_ARTIFACT` | `project`, `repository`, `digest`, `tags` (removed), `media_type`? |
| `QUOTA_WARNING` | `project`, `storage_used`, `storage_quota` |
| `QUOTA_EXCEEDED` | `project`, `storage_used`, `storage_quota`, `refused_bytes`?, `digest`?, `reason`? |
| `IMPORT_COMPLETED` | `project`, `task_id`, `image`, `repository`, `tag`, `digest`, `platforms` |
| `IMPORT_FAILED` | `project`, `task_id`, `image`, `repository`, `message` |
| `PING` | `webhook_id`, `message`, `project`? |

Example (`PUSH_ARTIFACT`):

```json
{"id": "evt_6c0f2b4e9d8a4b1f9a3e7c5d2b1a0f9e", "type": "PUSH_ARTIFACT",
 "occurred_at": "2026-11-29T21:00:00.123Z", "operator": "alice",
 "data": {"project": {"id": "550e…", "name": "team"}, "repository": "team/app", "tags": ["v1"],
          "digest": "sha256:…", "media_type": "application/vnd.oci.image.manifest.v1+json", "size": 1032}}
```"""),
    ("audit", "Audit log", "Who did what, from where, when, and how it ended."),
    ("system", "System", "Administrator operations."),
    ("reference", "This reference", "The document and its page, served by the server itself."),
    ("registry", "Outside /api/v1: health, the token endpoint and /v2/", """\
These routes are not in the envelope and not part of this document's operations; they are described here for
completeness.

### `GET /health`, `GET /api/health`

Anyone. `{"status":"healthy","service":"CYP-Registry","version":"v1.1.0","checks":{"database":"ok","storage":"ok"}}`,
200 when both checks are `ok`, 503 otherwise (`"status":"unhealthy"`, a failing check reading
`"unavailable: <ExceptionName>"`). Both checks run side by side, each bounded at 2 s; `Cache-Control: no-store`.

### `GET /metrics`

Anyone, unless `metrics_token` is set: then only a request with `Authorization: Bearer <metrics_token>` (401
with `WWW-Authenticate: Bearer` otherwise); 404 when `metrics_enabled` is false. The Prometheus text format (`text/plain; version=0.0.4`, or
OpenMetrics when `Accept` asks for it), `Cache-Control: no-store`. The README's *Metrics* section lists the
series.

### The registry token endpoint `/auth/token`

The Docker token-authentication endpoint `/v2/` sends clients to. Its answers and errors use the registry
format, not the envelope; `Cache-Control: no-store`.

- `GET /auth/token?service=cyp-registry&scope=…`: optional HTTP Basic credentials, the password being the
  account's password or one of its PATs (a malformed `Authorization` header counts as none; without
  credentials the caller is anonymous and can get pull access to public projects). `scope` may repeat, and one
  value may hold several scopes separated by spaces: `repository:<name>:<actions>` (`pull`, `push`, `delete` or
  `*`, comma-separated) or `registry:catalog:*`; malformed scopes are skipped. `service` is accepted but not
  checked.
- `POST /auth/token`: the OAuth2 password grant, `application/x-www-form-urlencoded` with
  `grant_type=password`, `username`, `password` and optional `scope` fields. Any other `grant_type` gets 400
  `UNSUPPORTED`.

The answer: `{"token": "eyJ…", "access_token": "eyJ…", "expires_in": 900, "issued_at": "2026-11-29T20:29:49Z"}`:
`token` and `access_token` are the same HS256 JWT, living `registry_token_ttl_seconds`; no refresh token. The
server grants the requested actions the caller may take and drops the others silently (the refusal comes from
`/v2/`): a project's owner or an administrator may `pull`, `push`, `delete`; anyone else may `pull` a public
project and nothing of a private (or missing) one; a PAT narrows that by its `registry:*` scopes. Any caller may
list the catalog (a PAT needs `registry:pull` or `registry:push`). Errors: 401 `UNAUTHORIZED` (wrong credentials,
disabled account), 429 `TOOMANYREQUESTS` (login throttling, shared with `/api/v1/auth/login`; or the caller's rate
limit, with `Retry-After`), 400
`UNSUPPORTED` (wrong `grant_type`).

### The registry API `/v2/`

The OCI distribution spec v1.1, with Docker's compatibility headers; every answer carries
`Docker-Distribution-Api-Version: registry/2.0`.

- **Names**: a repository name is `<project>/<repository>`, two or more components each matching
  `[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*`, at most 255 characters; the project must exist before anything is
  pushed. A tag matches `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`. Digests are `sha256:<64 hex>` or
  `sha512:<128 hex>`, lowercase.
- **Authentication**: without a suitable token the answer is 401 `UNAUTHORIZED` with
  `WWW-Authenticate: Bearer realm="<public_url or this host>/auth/token",service="cyp-registry",scope="repository:team-a/app:pull"`
  (`pull` for GET/HEAD, `pull,push` for POST/PATCH/PUT, `delete` for DELETE; a mount adds
  `repository:<from>:pull`). A valid token lacking the action gets the challenge with
  `error="insufficient_scope"`; 403 `DENIED` when the user may never take it (for a PAT without the scope the
  message names it); 404 `NAME_UNKNOWN` when the project does not exist or is private and not the caller's.

| method | path | action | notes |
|---|---|---|---|
| GET | `/v2/` | any valid token | `{}`; 401 with a challenge without one |
| GET | `/v2/_catalog?n=&last=` | `registry:catalog:*` | the repositories of the projects the caller can see |
| GET | `/v2/<name>/tags/list?n=&last=` | pull | `{"name":…,"tags":[…]}`, sorted |
| GET, HEAD | `/v2/<name>/manifests/<tag or digest>` | pull | `Content-Type` is the manifest's media type; `Docker-Content-Digest`, `ETag`; an `Accept` excluding the type gets `MANIFEST_UNKNOWN` |
| PUT | `/v2/<name>/manifests/<tag or digest>[?tag=…&tag=…]` | push | stores the exact bytes; 201 with `Location`, `Docker-Content-Digest`, `OCI-Subject`, one `OCI-Tag` per tag applied; one bad tag stores nothing (`TAG_INVALID`) |
| DELETE | `/v2/<name>/manifests/<tag or digest>` | delete | by digest the manifest and every tag on it, by tag the tag only; 202 |
| GET, HEAD | `/v2/<name>/blobs/<digest>` | pull | `Range: bytes=…` gives 206, or 416 with `Content-Range: bytes */<size>`; with `s3_redirect` a 307 to a presigned URL |
| DELETE | `/v2/<name>/blobs/<digest>` | delete | unlinks the blob from this repository; 202 |
| POST | `/v2/<name>/blobs/uploads/[?digest=…][?mount=…&from=…]` | push | a session (202, `Location`, `Docker-Upload-UUID`, `Range: 0-0`); monolithic with `digest` (201); a cross-repository mount (201, or a new session when it cannot mount) |
| GET, PATCH, PUT, DELETE | `/v2/<name>/blobs/uploads/<uuid>` | push | progress (204 with `Range`); a chunk (`Content-Range` must start at the current size, else 416 `RANGE_INVALID`); the last chunk and `?digest=` (201); cancel (204) |
| GET | `/v2/<name>/referrers/<digest>[?artifactType=<t>]` | pull | an OCI image index of the manifests whose `subject` is the digest; empty, never 404 |

- **Pagination**: `n` above 10000 is served as 10000; a `Link: <…>; rel="next"` header when more remain; a
  non-numeric `n` gets 400 `PAGINATION_NUMBER_INVALID`.
- **Manifests**: Docker schema 2 manifests and manifest lists, OCI image manifests and indexes (artifacts and
  `subject` included); schema 1 is refused. At most 4 MiB (413 `SIZE_INVALID`). Every blob and child manifest
  referenced must already be in the repository (`MANIFEST_BLOB_UNKNOWN`), non-distributable layers with `urls`
  excepted.
- **Uploads** are resumable on any node; a session busy with another request gets 409 `BLOB_UPLOAD_INVALID`;
  an upload untouched for `upload_expiry_seconds` is deleted.
- **Quota**: a blob or manifest that would take the project over its quota is refused with 403 `DENIED`, its
  `detail` holding `{"reason":"quota_exceeded","adding":…,"storage_used":…,"storage_quota":…}`; nothing of it
  stays.
- **Errors** are `{"errors":[{"code":…,"message":…,"detail":…}]}`: 404 `BLOB_UNKNOWN`, `BLOB_UPLOAD_UNKNOWN`,
  `MANIFEST_UNKNOWN`, `NAME_UNKNOWN`; 400 `BLOB_UPLOAD_INVALID` (409 when busy), `DIGEST_INVALID`,
  `MANIFEST_BLOB_UNKNOWN`, `MANIFEST_INVALID`, `NAME_INVALID`, `TAG_INVALID`, `PAGINATION_NUMBER_INVALID`,
  `SIZE_INVALID` (413 for a manifest over 4 MiB); 416 `RANGE_INVALID`; 401 `UNAUTHORIZED`; 403 `DENIED`; 405
  `UNSUPPORTED`; 429 `TOOMANYREQUESTS` (with `Retry-After`: login throttling or the caller's rate limit); 503 `UNAVAILABLE` (`Retry-After: 5`); 500 `UNKNOWN`. An unknown path
  under `/v2/` gets 404 `NAME_INVALID`."""),
    ("seed", "Differences from the seed contract", """\
The code is what runs. These are the places where the original contract (`shared/seed/API.md`) says something
else.

| topic | seed | code |
|---|---|---|
| success code range | 20000–20099 is success | only 20000; 20001–20004 are errors |
| `POST /auth/refresh` | requires authentication | the refresh token in the body is the only credential |
| login answer | `access_token`, `refresh_token`, `expires_at`, `token_type` | also `refresh_expires_at` |
| project routes | all require authentication | `GET` of the list, a project, statistics, storage, repositories and tags also work anonymously (public projects) |
| Project object | no `owner_id` or `repository_count` | both present |
| health | `{status, service, version}` | adds `checks`, and 503 when unhealthy |
| image import task | `task_id`, `status` (pending, running, completed, failed), `image`, `progress`, `message`, `created_at`, `updated_at` | those, plus `cancelled` status, `repository`, `tag`, `platforms`, `details`; `DELETE` cancels |
| webhooks | list, create, detail, update, delete, test, deliveries | those, plus redeliver and the payload schemas; `PUT` also rotates the secret |
| avatar upload | body format unspecified | raw PNG/JPEG/WebP bytes as the request body |
| not in the seed | — | `GET /users/me/avatar`, `GET /users/:id/avatar`, `POST /projects/:id/recount`, `POST /system/gc`, `registry:delete` scope, `must_change_password`, repositories and tags, `/metrics`, this document |
| `/v2/` | nine endpoints | the whole OCI distribution spec v1.1 |"""),
)
