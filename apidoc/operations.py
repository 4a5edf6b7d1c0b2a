"""Every /api/v1 operation, declared once: what the OpenAPI document (apidoc/document.py) says of it.

One table beside the route table rather than declarations on the handler classes: handlers stay thin (parse,
authorize, call, write), one handler class often serves several documented operations (GET and PUT, a route
with and without a parameter), and the whole API reads here in the order of its reference. The route table
(handlers/__init__.py) stays the truth of what is served; tests/unit/test_openapi_document.py fails when a
route or a method there has no operation here, or an operation here has no route.

Request bodies name their schema in schemas/api/, answers theirs in schemas/api/responses/: the document embeds
those files, it never copies them.
"""
from dataclasses import dataclass, field

from services.audit import OPERATIONS as AUDIT_OPERATIONS, OUTCOMES as AUDIT_OUTCOMES
from services.imports import STATUSES as IMPORT_STATUSES
from services.webhooks import DELIVERY_STATUSES


@dataclass(frozen=True)
class Answer:
    """What ``data`` holds on success: ``kind`` is ``one`` (the schema), ``list`` (an array of it), ``page``
    (``{items, total, page, page_size}`` of it) or ``null``; ``raw`` answers are not the envelope at all."""

    kind: str
    schema: str = None
    media_types: tuple = ()
    description: str = ""


def one(schema):
    return Answer("one", schema)


def many(schema):
    return Answer("list", schema)


def page(schema):
    return Answer("page", schema)


NULL = Answer("null")


def raw(media_types, description, schema=None):
    return Answer("raw", schema, tuple(media_types), description)


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    operation_id: str
    tag: str
    summary: str
    # anyone: no token; optional: anonymous callers too, but a token sent must be valid; user: any account;
    # session: an account logged in with its password (not a PAT); owner: the project's owner or an
    # administrator; admin: administrators.
    access: str
    answer: Answer
    request: str = None
    request_media: tuple = ()
    query: tuple = ()
    errors: tuple = ()
    description: str = ""
    extra_scope: str = None
    links: dict = field(default_factory=dict)
    example: object = None
    request_example: object = None


PROJECT_LINKS = {
    "GetProject": ("getProject", {"project_id": "$response.body#/data/id"}),
    "UpdateProject": ("updateProject", {"project_id": "$response.body#/data/id"}),
    "GetProjectStorage": ("getProjectStorage", {"project_id": "$response.body#/data/id"}),
    "ListRepositories": ("listRepositories", {"project_id": "$response.body#/data/id"}),
    "ListImports": ("listImports", {"project_id": "$response.body#/data/id"}),
    "DeleteProject": ("deleteProject", {"project_id": "$response.body#/data/id"}),
}
USER_LINKS = {
    "GetUser": ("getUser", {"user_id": "$response.body#/data/id"}),
    "UpdateUser": ("updateUser", {"user_id": "$response.body#/data/id"}),
    "DeleteUser": ("deleteUser", {"user_id": "$response.body#/data/id"}),
}
WEBHOOK_LINKS = {
    "GetWebhook": ("getWebhook", {"webhook_id": "$response.body#/data/id"}),
    "UpdateWebhook": ("updateWebhook", {"webhook_id": "$response.body#/data/id"}),
    "ListDeliveries": ("listDeliveries", {"webhook_id": "$response.body#/data/id"}),
    "DeleteWebhook": ("deleteWebhook", {"webhook_id": "$response.body#/data/id"}),
}
TASK_LINKS = {
    "GetImport": ("getImport", {"project_id": "$request.path.project_id", "task_id": "$response.body#/data/task_id"}),
    "CancelImport": ("cancelImport", {"project_id": "$request.path.project_id",
                                      "task_id": "$response.body#/data/task_id"}),
}

PROJECT_NOT_FOUND = (20001, "`project not found`: no such project, or a private one the caller may not see")
NOT_OWNER = (30003, "`only the project's owner or an administrator may change it`")
REPOSITORY_ERRORS = (
    PROJECT_NOT_FOUND,
    (20001, "`repository name not known to registry`: the project holds no such repository"),
    (10001, "the repository path is off the name grammar, or the tag off the tag grammar"),
)
WEBHOOK_NOT_FOUND = (20001, "no such webhook, or another user's")

USER_EXAMPLE = {
    "id": "ecf74457-a496-40b5-b871-e77eeddb51fd", "username": "alice", "email": "alice@example.com",
    "display_name": "Alice", "bio": "", "is_admin": False, "disabled": False, "must_change_password": False,
    "avatar_url": "/api/v1/users/ecf74457-a496-40b5-b871-e77eeddb51fd/avatar",
    "created_at": "2026-11-29T20:29:33.551Z", "updated_at": "2026-11-29T20:30:32.439Z",
    "last_login_at": "2026-11-29T20:30:14.745Z",
}
PAT_EXAMPLE = {
    "id": "ff78e786f78f403882b68ce00e5f7ed3", "name": "ci", "scopes": ["registry:pull", "registry:push"],
    "prefix": "cyp_IZod", "expires_at": "2030-01-01T00:00:00.000Z", "created_at": "2026-11-29T20:29:24.215Z",
    "last_used_at": None,
}
PROJECT_EXAMPLE = {
    "id": "1a269795-eaa3-41b7-a820-9b45ff9bf81b", "name": "team-a", "description": "Team A images",
    "is_public": True, "owner_id": "ecf74457-a496-40b5-b871-e77eeddb51fd", "storage_quota": 10737418240,
    "storage_used": 100978, "image_count": 2, "repository_count": 1, "created_at": "2026-11-29T20:29:44.850Z",
    "updated_at": "2026-11-29T20:29:44.850Z",
}
TAG_EXAMPLE = {
    "tag": "multi", "digest": "sha256:e591a6dbc053407d563d4748514db00aaae378626d940f0906c517a07023ae9e",
    "media_type": "application/vnd.oci.image.index.v1+json", "size": 1630, "manifest_size": 532,
    "platforms": [
        {"digest": "sha256:1d70a2e6f5e0f1c4b8a3b0c3c3e5f1c4b8a3b0c3c3e5f1c4b8a3b0c3c3e5f1c4",
         "media_type": "application/vnd.oci.image.manifest.v1+json", "size": 416, "os": "linux",
         "architecture": "amd64", "variant": None},
        {"digest": "sha256:38090a1e6f5e0f1c4b8a3b0c3c3e5f1c4b8a3b0c3c3e5f1c4b8a3b0c3c3e5f1c",
         "media_type": "application/vnd.oci.image.manifest.v1+json", "size": 416, "os": "linux",
         "architecture": "arm", "variant": "v7"},
    ],
    "pushed_at": "2026-11-30T01:42:40.113Z", "last_pulled_at": None, "referrers_count": 0,
}
WEBHOOK_EXAMPLE = {
    "id": "wh_3f2a9c1d5e7b4a6c8d0e2f4a6b8c0d2e", "name": "ci", "url": "https://ci.example.com/hook",
    "events": ["PUSH_ARTIFACT"], "project_id": "1a269795-eaa3-41b7-a820-9b45ff9bf81b", "repository_filter": "*",
    "tag_filter": "v*", "format": "default", "enabled": True, "headers": {"Authorization": "[redacted]"},
    "created_at": "2026-11-29T21:00:00.000Z", "updated_at": "2026-11-29T21:00:00.000Z",
    "last_delivery_at": "2026-11-29T21:05:00.000Z", "last_status": 204, "consecutive_failures": 0,
    "disabled_reason": None,
}
TASK_EXAMPLE = {
    "task_id": "6f1c0e2a9b8d4c7e", "status": "pending", "image": "nginx:1.27", "repository": "myproject/nginx",
    "tag": "1.27", "platforms": None, "progress": 0, "message": "waiting to start",
    "created_at": "2026-02-01T00:00:00.000Z", "updated_at": "2026-02-01T00:00:00.000Z",
    "details": {"phase": "waiting", "bytes_done": 0, "bytes_total": None, "blobs_done": 0, "blobs_total": None,
                "current_blob": None, "platforms_imported": [], "platforms_skipped": [], "digest": None,
                "attempts": 0, "last_error": None},
}

OPERATIONS = (
    # -- authentication ------------------------------------------------------------------------------------
    Operation(
        "POST", "/api/v1/auth/login", "login", "auth", "Log in with a password", "anyone", one("session_tokens"),
        request="login",
        request_example={"username": "alice", "password": "correct-Horse-9"},
        errors=((30001, "`invalid username or password`: unknown user or wrong password"),
                (30001, "`log in with the account password; a personal access token is used as a bearer token`"),
                (30003, "`this account is disabled`: the password is right but the account is disabled"),
                (30004, "`too many failed logins; try again after <time>`: throttled (see below)")),
        description="""\
`username` is matched without regard to case. A successful login starts a new session and sets the user's
`last_login_at`. `expires_at` is when the access token expires, `refresh_expires_at` when the refresh token
does (Unix seconds).

**Login throttling.** The counters live in MongoDB, so every node shares them.

- Each failed attempt counts against the username (compared in lowercase) and against the client address.
  Failed attempts at `/auth/token` count too.
- After `login_max_failures` failures (default 5) for a username, or four times as many (default 20) from one
  address, all within `login_lock_seconds` (default 900 s) of the first failure, every attempt for that name or
  from that address gets 30004 for `login_lock_seconds`, including attempts with the right password. The
  `Retry-After` header gives the seconds left; the message holds the time.
- Before the lock starts, each failure is answered more slowly: 0.1 s, doubling, at most 2 s.
- A successful login resets the username's counter, not the address's.
- The client address is the TCP peer, unless `trust_proxy_headers` is set; then it is taken from `X-Real-Ip` /
  `X-Forwarded-For`.""",
        example={"access_token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9…",
                 "refresh_token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9…", "expires_at": 1795987748,
                 "refresh_expires_at": 1796588948, "token_type": "Bearer"}),
    Operation(
        "POST", "/api/v1/auth/refresh", "refreshSession", "auth", "Rotate a refresh token", "anyone",
        one("session_tokens"), request="refresh",
        errors=((30002, "`invalid or expired refresh token`: malformed or expired"),
                (30002, "`not a refresh token`: an access token was sent"),
                (30002, "`refresh token already used or session ended; log in again`: reuse (the session is now "
                        "ended), or the session was ended by logout, a password change, or an administrator "
                        "disabling the account or setting its password"),
                (30002, "`account no longer exists`")),
        description="""\
No `Authorization` header is needed: the refresh token in the body is the credential. The answer is a new pair,
as the login's. The refresh token **rotates**: each works once, and the new one's lifetime starts again from
now. A refresh token already used, presented again, ends the **whole session**: its current access token and
its newest refresh token stop working at once, on every node (this protects a session whose refresh token was
copied)."""),
    Operation(
        "POST", "/api/v1/auth/logout", "logout", "auth", "End the calling session", "session", NULL,
        errors=((10001, "`a personal access token is revoked with DELETE /api/v1/users/me/pat/:id`: the caller is "
                        "a PAT"),),
        description="No body. The session ends on every node at once: its access token and its refresh token "
                    "both stop working."),
    Operation(
        "GET", "/api/v1/auth/default-admin-once", "takeDefaultAdminHint", "auth",
        "The first administrator's password, answered once", "anyone", one("default_admin"),
        errors=((20003, "`the default administrator hint has already been shown or is not available`: on every "
                        "later call, on any node (the flag is in MongoDB); on a node that did not create the "
                        "administrator; after a restart; when users already existed at start"),),
        description="""\
On the first start the server creates the administrator `admin` when there are no users. Its password is
`bootstrap_admin_password` when configured, otherwise a random one printed on the console, to be changed after
the first login. The node that created the account answers this request once. When the password was
configured, `password` is null and `message` is `password set by configuration`.""",
        example={"username": "admin", "password": "isIKWhc3sOV9tnpKac7pDXt7", "must_change_password": True,
                 "message": "shown once; change it now"}),

    # -- the calling account -------------------------------------------------------------------------------
    Operation(
        "GET", "/api/v1/users/me", "getMe", "account", "The calling account", "user", one("user"),
        description="Read `must_change_password` and ask for a password change first when it is true.",
        example=USER_EXAMPLE),
    Operation(
        "PUT", "/api/v1/users/me", "updateMe", "account", "Update the calling account's profile", "user",
        one("user"), request="profile_update",
        description="Send at least one field; fields left out keep their value."),
    Operation(
        "PUT", "/api/v1/users/me/password", "changePassword", "account", "Change the calling account's password",
        "user", NULL, request="password_change",
        errors=((30003, "`old_password is wrong`"),
                (10001, "`new_password must differ from old_password`"),
                (10001, "`new_password: password must …`: the new password breaks the password rule"),
                (30004, "`too many failed logins; try again after <time>`: wrong `old_password`s count as failed "
                        "logins")),
        description="""\
`new_password` follows the password rule (see *Password rule*). On success `must_change_password` is cleared
and **every other session of the user ends**; the session that made the call stays logged in (called with a
PAT, every session ends). PATs are not revoked. A wrong `old_password` counts against the login throttle (see
`POST /api/v1/auth/login`), so a stolen session cannot guess the password freely."""),
    Operation(
        "POST", "/api/v1/users/me/avatar", "uploadAvatar", "account", "Upload the calling account's avatar", "user",
        one("user"), request_media=("application/octet-stream",),
        errors=((10003, "`avatar exceeds <avatar_max_bytes> bytes`: too large"),
                (10001, "`avatar must be a PNG, JPEG or WebP image sent as the request body`")),
        description="""\
The request body is the **raw image bytes**, not JSON and not multipart. `Content-Type` is ignored: the type
is read from the first bytes and must be PNG, JPEG or WebP. The limit is `avatar_max_bytes` (default 2 MiB),
checked from `Content-Length` before reading and again while the body streams. The new avatar replaces the old
one; the answer is the user, whose `avatar_url` now points at the image.

```sh
curl -X POST "$BASE/api/v1/users/me/avatar" -H "Authorization: Bearer $TOKEN" --data-binary @me.png
```"""),
    Operation(
        "GET", "/api/v1/users/me/avatar", "getMyAvatar", "account", "The calling account's avatar image", "user",
        raw(("image/png", "image/jpeg", "image/webp"), "the image bytes, not the envelope"),
        errors=((20001, "`this user has no avatar`"),),
        description="""\
The answer is the image itself, not the envelope, with `Content-Type` (`image/png`, `image/jpeg` or
`image/webp`), `Content-Length`, `ETag: "sha256:<hex>"` and `Cache-Control: private, max-age=300`. Errors are
in the envelope."""),
    Operation(
        "GET", "/api/v1/users/me/token-info", "getTokenInfo", "account", "The token this request was made with",
        "user", one("token_info"),
        description="""\
For a session, `issued_at` / `expires_at` are those of the access token and `session_id` names the session.
For a PAT, `pat_id`, `pat_name` and `last_used_at` describe it; `issued_at` is when it was created and
`expires_at` is null when it never expires.""",
        example={"type": "session", "user_id": "a9f9612d-0f64-48c9-acec-aee375b7d5b1", "username": "admin",
                 "scopes": ["api:read", "api:write", "registry:delete", "registry:pull", "registry:push"],
                 "session_id": "a729e99f998e4d7992fc2e22bc21161a", "issued_at": "2026-11-29T20:29:08.000Z",
                 "expires_at": "2026-11-29T21:29:08.000Z"}),
    Operation(
        "GET", "/api/v1/users/me/notification-settings", "getNotificationSettings", "account",
        "The calling account's notification settings", "user", one("notification_settings"),
        description="Stored for clients and for notification delivery; this version sends no e-mail.",
        example={"email_enabled": False, "events": {"push": True, "delete": True, "quota_warning": True,
                                                    "quota_exceeded": True, "import_completed": True,
                                                    "import_failed": True}}),
    Operation(
        "PUT", "/api/v1/users/me/notification-settings", "updateNotificationSettings", "account",
        "Change notification settings", "user", one("notification_settings"), request="notification_settings",
        description="A partial update (at least one field): the fields sent are merged into the stored settings; "
                    "the answer is the complete settings after it."),

    # -- personal access tokens ----------------------------------------------------------------------------
    Operation(
        "GET", "/api/v1/users/me/pat", "listPats", "pats", "The calling account's personal access tokens", "user",
        many("pat"),
        description="A plain array, **not paged**: the caller's unrevoked PATs, newest first, expired ones "
                    "included. `scopes` are sorted; `prefix` is the first 8 characters of the secret, to "
                    "recognise it; `expires_at` is null for a PAT that never expires.",
        example=[PAT_EXAMPLE]),
    Operation(
        "POST", "/api/v1/users/me/pat", "createPat", "pats", "Create a personal access token", "session",
        one("pat_created"), request="pat_create",
        request_example={"name": "ci", "scopes": ["registry:pull", "registry:push"],
                         "expires_at": "2030-01-01T00:00:00Z"},
        errors=((30003, "`a personal access token cannot create another; log in with the password`"),
                (10001, "`scopes.0 must be one of …`, `scopes must have at least 1 items`"),
                (10001, "`expires_at must carry a time zone`, `… must be an RFC 3339 time or Unix seconds`, "
                        "`… must be in the future`")),
        links={"RevokePat": ("revokePat", {"pat_id": "$response.body#/data/id"})},
        description="""\
Only an account logged in **with its password** (a session) may create one. `name` need not be unique.
`expires_at` is an RFC 3339 time **with** a time zone (`2030-01-01T00:00:00Z`, `2030-01-01T10:00:00+02:00`) or
Unix seconds (0 … 253402300799), in the future; null or absent never expires. The answer holds `token`, the
secret: **it is shown only this once**; the server keeps its SHA-256.""",
        example={**PAT_EXAMPLE, "token": "cyp_IZodlvo4kIuP2kq1hCmZRBpRTnsWenzne9pHCR7u-Fk"}),
    Operation(
        "DELETE", "/api/v1/users/me/pat/{pat_id}", "revokePat", "pats", "Revoke one of the calling account's PATs",
        "user", NULL,
        errors=((20001, "`personal access token not found`: an unknown id, another user's PAT, or one already "
                        "revoked"),),
        description="The PAT stops working at once, on every node, and so do registry tokens already issued "
                    "from it."),

    # -- user administration -------------------------------------------------------------------------------
    Operation(
        "GET", "/api/v1/users", "listUsers", "users", "List users", "admin", page("user"),
        query=("page", "page_size", "user_search"),
        description="Sorted by username."),
    Operation(
        "POST", "/api/v1/users", "createUser", "users", "Create a user", "admin", one("user"), request="user_create",
        request_example={"username": "alice", "password": "Initial-Pass-42", "email": "alice@example.com",
                         "display_name": "Alice"},
        errors=((10001, "`username has an invalid format`"),
                (10001, "`password must …`: the password breaks the password rule"),
                (20002, "`username alice is taken`: the username exists, compared without regard to case")),
        links=USER_LINKS,
        description="`password` follows the password rule; `display_name` defaults to the username."),
    Operation(
        "GET", "/api/v1/users/{user_id}", "getUser", "users", "A user", "admin", one("user"),
        errors=((20001, "`user not found`"),)),
    Operation(
        "PATCH", "/api/v1/users/{user_id}", "updateUser", "users", "Change a user", "admin", one("user"),
        request="user_admin_update",
        errors=((20001, "`user not found`"),
                (10001, "`password: password must …`: the password breaks the password rule"),
                (20002, "`the last administrator cannot be demoted, disabled or deleted`")),
        description="""\
Send at least one field. Setting `disabled: true` ends all the user's sessions; while the account is disabled
its PATs and registry tokens are refused as well. Setting `password` ends all the user's sessions, the caller's
own when administrators set their own password this way; for someone else it also sets
`must_change_password: true`."""),
    Operation(
        "DELETE", "/api/v1/users/{user_id}", "deleteUser", "users", "Delete a user", "admin", NULL,
        errors=((20001, "`user not found`"),
                (20002, "`the last administrator cannot be demoted, disabled or deleted`")),
        description="Ends the user's sessions, revokes the user's PATs and deletes the avatar. Projects the user "
                    "owned are kept; after that only administrators manage them."),
    Operation(
        "GET", "/api/v1/users/{user_id}/avatar", "getUserAvatar", "account", "A user's avatar image", "user",
        raw(("image/png", "image/jpeg", "image/webp"), "the image bytes, not the envelope"),
        errors=((20001, "`user not found`, `this user has no avatar`"),),
        description="Every logged-in account may read every user's avatar; the answer is as "
                    "`GET /api/v1/users/me/avatar`'s."),

    # -- projects ------------------------------------------------------------------------------------------
    Operation(
        "GET", "/api/v1/projects", "listProjects", "projects", "List the projects the caller can see", "optional",
        page("project"), query=("page", "page_size", "project_search", "is_public"),
        description="Anonymous callers see public projects; users see public projects and their own; "
                    "administrators see all. Sorted by name."),
    Operation(
        "POST", "/api/v1/projects", "createProject", "projects", "Create a project", "user", one("project"),
        request="project_create",
        request_example={"name": "team-a", "description": "Team A images", "is_public": False,
                         "storage_quota": 10737418240},
        errors=((10001, "`name must be lowercase letters and digits, optionally separated by . _ __ or -, at most "
                        "64 characters`"),
                (20002, "`project team-a already exists`"),
                (30003, "`storage_quota may be at most the default of … bytes`: a non-administrator asked for more "
                        "than `default_project_quota` (when that is limited)")),
        links=PROJECT_LINKS,
        description="""\
The caller becomes the owner. `name` is the first component of every repository name in the project:
lowercase letters and digits, optionally separated by `.`, `_`, `__` or `-`. A project is private unless
`is_public`; `storage_quota` defaults to `default_project_quota` (-1, unlimited, unless configured).""",
        example=PROJECT_EXAMPLE),
    Operation(
        "GET", "/api/v1/projects/statistics", "getProjectStatistics", "projects",
        "Figures over the projects the caller can see", "optional", one("project_statistics"),
        description="`storage_quota` is the sum of the quotas of projects that have a limit; projects without "
                    "one are counted in `unlimited_projects` instead.",
        example={"total_projects": 2, "public_projects": 1, "private_projects": 1, "repository_count": 1,
                 "image_count": 2, "tag_count": 1, "storage_used": 100978, "storage_quota": 5368709120,
                 "unlimited_projects": 1}),
    Operation(
        "GET", "/api/v1/projects/{project_id}", "getProject", "projects", "A project", "optional", one("project"),
        errors=(PROJECT_NOT_FOUND,), example=PROJECT_EXAMPLE),
    Operation(
        "PUT", "/api/v1/projects/{project_id}", "replaceProject", "projects", "Change a project (as PATCH)",
        "owner", one("project"), request="project_update",
        errors=(PROJECT_NOT_FOUND, NOT_OWNER,
                (10001, "`a project cannot be renamed: its repositories are named after it`")),
        description="The same partial update as `PATCH`."),
    Operation(
        "PATCH", "/api/v1/projects/{project_id}", "updateProject", "projects", "Change a project", "owner",
        one("project"), request="project_update",
        errors=(PROJECT_NOT_FOUND, NOT_OWNER,
                (10001, "`a project cannot be renamed: its repositories are named after it`")),
        description="Send at least one field. `name` is accepted only when it equals the current name. The "
                    "storage quota is changed with `PUT /api/v1/projects/{project_id}/quota`."),
    Operation(
        "DELETE", "/api/v1/projects/{project_id}", "deleteProject", "projects", "Delete a project", "owner", NULL,
        query=("force",),
        errors=(PROJECT_NOT_FOUND, NOT_OWNER,
                (20002, "`project team-a holds 2 images; delete them first or pass force=true`")),
        description="""\
A project that still holds manifests is refused without `force=true`. With it, the project's manifests, tags,
blob links, repositories, webhooks and quota accounting are removed; blob data nothing else links is freed by
the next garbage collection."""),
    Operation(
        "PUT", "/api/v1/projects/{project_id}/quota", "setProjectQuota", "projects", "Set a project's storage quota",
        "admin", one("project"), request="project_quota", errors=(PROJECT_NOT_FOUND,),
        request_example={"storage_quota": 5368709120},
        description="""\
The quota may be set below the current usage: pushes that add bytes are then refused until usage falls.
Crossing 80 % of the quota emits a `QUOTA_WARNING` event; going over it a `QUOTA_EXCEEDED` event."""),
    Operation(
        "GET", "/api/v1/projects/{project_id}/storage", "getProjectStorage", "projects", "A project's storage",
        "optional", one("project_storage"), errors=(PROJECT_NOT_FOUND,),
        description="""\
`percent` is `storage_used / storage_quota × 100`, rounded to 2 decimals: 0 for an unlimited quota, 100.0 for
a quota of 0. A repository's `size` counts every blob it links plus its manifests; a blob shared by two
repositories counts in both rows, but once in `storage_used`.""",
        example={"project_id": "1a269795-eaa3-41b7-a820-9b45ff9bf81b", "storage_used": 100978,
                 "storage_quota": 5368709120, "percent": 0.0,
                 "repositories": [{"name": "team-a/app", "size": 100978, "blob_count": 3, "manifest_count": 2}]}),
    Operation(
        "POST", "/api/v1/projects/{project_id}/recount", "recountProject", "projects",
        "Recompute a project's storage usage", "admin", one("recount"), query=("fix",), errors=(PROJECT_NOT_FOUND,),
        description="""\
Recomputes the usage from the project's blob links and manifests and compares it with the recorded figure;
with `fix=true` also repairs the recorded usage. `drift` is `recorded − actual`; `fixed` is true only when
`fix=true` was given and there was drift to repair. `python server.py recount [--fix]` does the same for every
project.""",
        example={"project_id": "1a269795-eaa3-41b7-a820-9b45ff9bf81b", "recorded": 100978, "actual": 100978,
                 "drift": 0, "fixed": False}),
    Operation(
        "GET", "/api/v1/projects/{project_id}/members", "projectMembersRetired", "projects",
        "Retired: project members and teams", "anyone", NULL,
        errors=((20003, "`project members and teams have been retired`: always, for any method, on `/members` "
                        "or any path below it, with or without a token"),),
        description="A project has one owner, and administrators. Any method on this path answers 410."),

    # -- image import --------------------------------------------------------------------------------------
    Operation(
        "GET", "/api/v1/projects/{project_id}/images/import", "listImports", "imports", "A project's import tasks",
        "owner", page("import_task"), query=("page", "page_size", "import_status"),
        errors=(PROJECT_NOT_FOUND, (30003, "a public project of someone else")),
        description="Newest first."),
    Operation(
        "POST", "/api/v1/projects/{project_id}/images/import", "createImport", "imports",
        "Import an image from another registry", "owner", one("import_task"), request="import_create",
        request_example={"image": "nginx:1.27", "platforms": ["linux/amd64", "linux/arm64"]},
        errors=(PROJECT_NOT_FOUND, (30003, "a public project of someone else"),
                (10001, "`image` cannot be parsed (the message starts with `image`); the registry's address is one "
                        "the network guard refuses; a bad `repository` or `platforms`")),
        links=TASK_LINKS,
        description="""\
`image` is a reference as the docker CLI reads it: `nginx`, `nginx:1.27`, `ghcr.io/org/app@sha256:…`,
`host:5000/team/app:v1`. `username` / `password` are kept encrypted only while the task may need them, never
answered. `repository` defaults to the source path without Docker Hub's `library/`; `platforms`
(`os/architecture[/variant]`) imports only those from an index, stored as a sparse index. The answer is the
task, `pending`; an identical import (same image, target and platforms) still pending or running in the project
is answered instead of a new one.""",
        example=TASK_EXAMPLE),
    Operation(
        "GET", "/api/v1/projects/{project_id}/images/import/{task_id}", "getImport", "imports", "An import task",
        "owner", one("import_task"),
        errors=(PROJECT_NOT_FOUND, (20001, "no such task in the project"), (30003, "a public project of someone else")),
        description="""\
`status`: `pending` → `running` → `completed` / `failed` / `cancelled`. `progress` is 0–100 by bytes durably
stored, never backwards; `message` says the phase in words (`fetching blob 3/7, 812/1024 MiB`), and on failure
why (not found, unauthorized, forbidden, rate limited, unreachable, digest mismatch, quota, schema 1).
`details.digest` is the imported manifest's digest."""),
    Operation(
        "DELETE", "/api/v1/projects/{project_id}/images/import/{task_id}", "cancelImport", "imports",
        "Cancel an import task", "owner", one("import_task"),
        errors=(PROJECT_NOT_FOUND, (20001, "no such task in the project"), (30003, "a public project of someone else")),
        description="A pending task stops at once, a running one within a heartbeat of its node (a third of "
                    "`import_lease_seconds`), its partial data removed. Answers the task; a finished task is left "
                    "as it is."),

    # -- repositories and tags -----------------------------------------------------------------------------
    Operation(
        "GET", "/api/v1/projects/{project_id}/repositories", "listRepositories", "repositories",
        "A project's repositories", "optional", page("repository"),
        query=("page", "page_size", "repository_search"), errors=(PROJECT_NOT_FOUND,),
        description="""\
Sorted by name. `size` is the bytes of every blob the repository links plus those of its manifests (the
repository's row in the project's storage); linked blobs no manifest references any more count until garbage
collection unlinks them. `last_push` is the newest of the times a manifest was stored or a tag set (null when
it holds none); blob uploads alone do not count. A repository emptied by `DELETE` stays listed, every figure 0.""",
        example={"name": "team-a/app", "size": 5926, "blob_count": 9, "manifest_count": 5, "tag_count": 2,
                 "last_push": "2026-11-30T01:42:40.113Z", "pull_count": None,
                 "created_at": "2026-11-30T01:42:39.855Z"}),
    Operation(
        "DELETE", "/api/v1/projects/{project_id}/repositories/{repository}", "deleteRepository", "repositories",
        "Delete a repository's content", "owner", NULL, extra_scope="registry:delete",
        errors=(*REPOSITORY_ERRORS, NOT_OWNER, (30003, "`token lacks the registry:delete scope`")),
        description="""\
Removes every manifest of the repository with its tags, each exactly as `DELETE /v2/<name>/manifests/<digest>`
does (indexes first, one `DELETE_ARTIFACT` event per manifest, each releasing its quota reference), then every
blob link, as `DELETE /v2/<name>/blobs/<digest>` does. The project's `storage_used` then no longer counts
anything only this repository held. Blob data nothing links is freed by the next garbage collection. The name
stays, empty. A push into the repository while it is being deleted may lose blobs it already sent; the client
pushes again."""),
    Operation(
        "GET", "/api/v1/projects/{project_id}/repositories/{repository}/tags", "listTags", "repositories",
        "A repository's tags", "optional", page("tag"), query=("page", "page_size"), errors=REPOSITORY_ERRORS,
        description="""\
Sorted by tag. `size` is what the tag holds in the repository: its manifest, an index's child manifests, and
the distinct configs and layers they reference that the repository links (foreign layers are not stored, so
not counted); `manifest_size` is the manifest's own bytes. `platforms` lists an index's `manifests` in order
with their `platform` fields (null where the index gives none), null for an image. `pushed_at` is when the tag
was last pushed, to the second (a push of the tag onto the manifest it is on within a second of the last one
leaves it). `referrers_count` counts the manifests whose `subject` is the tag's digest.""",
        example=TAG_EXAMPLE),
    Operation(
        "GET", "/api/v1/projects/{project_id}/repositories/{repository}/tags/{tag}", "getTag", "repositories",
        "A tag with its manifest, layers and referrers", "optional", one("tag_detail"),
        errors=(*REPOSITORY_ERRORS, (20001, "`tag v9 not found in team-a/app`")),
        description="""\
The tag as listed, plus `manifest` (parsed from its stored bytes), `config` and `layers` (`{digest, media_type,
size}` as an image declares them; null for an index) and `referrers` (the manifests whose `subject` is the
tag's digest, with their `artifact_type` and `annotations`)."""),
    Operation(
        "DELETE", "/api/v1/projects/{project_id}/repositories/{repository}/tags/{tag}", "deleteTag", "repositories",
        "Delete a tag", "owner", NULL, extra_scope="registry:delete",
        errors=(*REPOSITORY_ERRORS, NOT_OWNER, (30003, "`token lacks the registry:delete scope`"),
                (20001, "no such tag")),
        description="""\
Exactly `DELETE /v2/<name>/manifests/<tag>`: the tag goes; its manifest, the manifest's other tags and the
project's usage stay. A `DELETE_ARTIFACT` event names the tag. A digest in place of `{tag}` gets 10001 (delete
by digest is the repository's delete, or `/v2/`)."""),

    # -- webhooks ------------------------------------------------------------------------------------------
    Operation(
        "GET", "/api/v1/webhooks", "listWebhooks", "webhooks", "Webhooks the caller manages", "user",
        page("webhook"), query=("page", "page_size", "webhook_project"), errors=(PROJECT_NOT_FOUND,),
        description="With `project_id`, that project's webhooks; without, the caller's projects' webhooks "
                    "(administrators: all, global ones included). Newest first.",
        example=WEBHOOK_EXAMPLE),
    Operation(
        "POST", "/api/v1/webhooks", "createWebhook", "webhooks", "Create a webhook", "owner",
        one("webhook_with_secret"), request="webhook_create",
        request_example={"name": "ci", "url": "https://ci.example.com/hook", "events": ["PUSH_ARTIFACT"],
                         "project_id": "1a269795-eaa3-41b7-a820-9b45ff9bf81b", "tag_filter": "v*",
                         "headers": {"Authorization": "Bearer ci-secret"}},
        errors=((10001, "a field; `url` naming an address the network guard refuses"),
                (30003, "a global webhook (`project_id` null) by a non-administrator"), PROJECT_NOT_FOUND),
        links=WEBHOOK_LINKS,
        description="""\
`url` is an http(s) URL without credentials, whose address must pass the network guard. `events` are the event
types it receives; `repository_filter` and `tag_filter` are globs (default `*`) on the full repository name and
on the tags (events without them ignore the filter). `format` `cloudevents` sends CloudEvents 1.0 structured
JSON (`application/cloudevents+json`). `headers` (at most 20) are sent with every delivery; their values are
never answered, and `webhook-*`, `content-type`, `host`… are refused. `secret` (`whsec_` and the base64 of 24 or
more bytes) is generated when absent. The answer holds `secret`: the only time it is shown."""),
    Operation(
        "GET", "/api/v1/webhooks/{webhook_id}", "getWebhook", "webhooks", "A webhook", "owner", one("webhook"),
        errors=(WEBHOOK_NOT_FOUND,), example=WEBHOOK_EXAMPLE),
    Operation(
        "PUT", "/api/v1/webhooks/{webhook_id}", "updateWebhook", "webhooks", "Change a webhook", "owner",
        one("webhook_with_secret"), request="webhook_update",
        errors=(WEBHOOK_NOT_FOUND, (10001, "a field; `url` naming an address the network guard refuses")),
        description="""\
Any field of the creation but `project_id`, plus `rotate_secret: true`, which answers the new `secret` once;
the previous secret keeps signing (a second signature) for `webhook_secret_overlap_seconds`. `enabled: true`
on a disabled webhook clears its failure count and reason. `secret` is in the answer only when it was set or
rotated."""),
    Operation(
        "DELETE", "/api/v1/webhooks/{webhook_id}", "deleteWebhook", "webhooks", "Delete a webhook", "owner", NULL,
        errors=(WEBHOOK_NOT_FOUND,), description="Removes it with its deliveries."),
    Operation(
        "POST", "/api/v1/webhooks/{webhook_id}/test", "testWebhook", "webhooks", "Send a PING", "owner",
        one("delivery"),
        errors=(WEBHOOK_NOT_FOUND, (10001, "the network guard refuses the webhook's address now")),
        description="Sends a `PING` through the same pipeline and guard and answers the delivery once its first "
                    "attempt is made (or after the timeout)."),
    Operation(
        "GET", "/api/v1/webhooks/{webhook_id}/deliveries", "listDeliveries", "webhooks", "A webhook's deliveries",
        "owner", page("delivery"), query=("page", "page_size", "delivery_status", "event_type"),
        errors=(WEBHOOK_NOT_FOUND,),
        description="Newest first: an event's delivery by when the event occurred, a redelivery by when it was "
                    "asked for. `body` is the exact payload sent; each attempt shows the request (secrets "
                    "redacted), the status, the first 4 KiB of the response, the duration and any error. An "
                    "event's delivery is listed once its first attempt has ended (it is stored with its outcome), "
                    "or, when it could not be sent within 5 s, as `pending`: during its first attempt (at most "
                    "5 s and `webhook_timeout_seconds`) it is not listed yet."),
    Operation(
        "POST", "/api/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver", "redeliver", "webhooks",
        "Send a delivery again", "owner", one("delivery"),
        errors=(WEBHOOK_NOT_FOUND, (20001, "`delivery not found`"),
                (20002, "`another redelivery of this delivery is still pending; try again once it has ended`: only "
                        "while a node of the previous version runs beside this one (its unique index refuses a "
                        "second redelivery of the same number)")),
        description="A new delivery of the same event (same `event_id`, same body) to this webhook, answered "
                    "after its first attempt. Its `redelivery` is the one of the delivery sent again plus one (0 is "
                    "the fan-out's own)."),
    Operation(
        "GET", "/api/v1/webhooks/schemas", "listPayloadSchemas", "webhooks",
        "The JSON Schema of every event type's payload", "anyone", one("payload_schemas"),
        description="The files of `schemas/webhooks/`, by event type: what a consumer validates with."),
    Operation(
        "GET", "/api/v1/webhooks/schemas/{event_type}", "getPayloadSchema", "webhooks",
        "The JSON Schema of one event type's payload", "anyone", one("payload_schema"),
        errors=((20001, "`no event type …; the types are …`"),)),

    # -- audit log -----------------------------------------------------------------------------------------
    Operation(
        "GET", "/api/v1/audit-logs", "listAuditLogs", "audit", "The audit log", "user", page("audit_record"),
        query=("page", "page_size", "audit_from", "audit_to", "audit_username", "audit_user_id",
               "audit_project_id", "audit_operation", "audit_outcome"),
        description="""\
An administrator sees every record; anyone else sees the records of the
projects they own (whoever acted in them) and those of their own account (their logins, including failed
attempts on their username, PATs, password and profile changes, and what they did anywhere). Records written
by a version before this list's scope was stored with each record are seen by administrators only.

Every filter is optional and they combine. An unknown operation or outcome, a time that does not parse, `from`
after `to`, or a value over 256 characters answer `10001` naming the filter.

Newest first. A record:

```json
{
  "id": "4f9c0d6e2b7a4e1f9a3c5b8d7e6f1a2b",
  "at": "2026-11-30T04:12:00.123Z",
  "operation": "artifact.push",
  "outcome": "success",
  "status": 201,
  "error_code": null,
  "user_id": "3b1e…",
  "username": "alice",
  "address": "203.0.113.7",
  "project_id": "9d2a…",
  "project_name": "team-a",
  "resource": {"repository": "team-a/app", "reference": "v1", "digest": "sha256:…"},
  "trace_id": "a1b2c3d4e5f60718",
  "count": 1
}
```

- `outcome` is `failure` when the answer's HTTP `status` was 400 or more; `error_code` is then the error
  table's code: an envelope code (a number, `30001`) under `/api/v1`, an OCI code (a string, `"DENIED"`)
  under `/v2/` and `/auth/token`.
- `username` is `anonymous` when nobody authenticated; for `auth.login` and `auth.token` it is the account
  the credentials named (with its `user_id`), or `unknown` when they named none (what was typed is not kept:
  it may be a password); `operator` for the command line, whose records have `address` `cli` and `status`,
  `trace_id` and `user_id` `null`.
- `project_id` and `project_name` name the project only once the caller was allowed to see it: a request
  refused as not found (or not allowed) on a project has both `null`, so no record tells whether a private
  project exists.
- `count` is 1 but for `artifact.pull` and a granted `auth.token`: identical ones written in one batch (the
  same account, address, project, resource and outcome within about a second) are one record with their
  number, `at` and `trace_id` the last one's.
- `address` is the client's, as `X-Real-Ip` / `X-Forwarded-For` give it only with `trust_proxy_headers`.
- `resource` names what was acted on, never a secret: `repository`, `reference`, `digest` (registry
  operations); `repository` (the path inside the project) and `tag` (API deletes); `pat_id`, `name`,
  `scopes`; `user_id`, `username`; `webhook_id`, `delivery_id`; `task_id`, `image`; `storage_quota`; for
  `user.update` by an administrator and `project.update`, `fields` (the names of the fields set, sorted) and
  the new values of `is_admin`, `disabled`, `is_public` among them (never a password).

Operations:

| operation | recorded for |
|---|---|
| `artifact.push` | manifest `PUT` under `/v2/` |
| `artifact.pull` | manifest `GET` under `/v2/` (not `HEAD`, not blobs); written in batches about a second later |
| `artifact.delete`, `tag.delete` | `/v2/` manifest `DELETE` by digest, by tag; `tag.delete` also for the API's tag delete |
| `repository.delete` | `DELETE /projects/:id/repositories/:repository` |
| `blob.upload` | a blob upload (`POST`, `PATCH`, `PUT`) refused or failed, such as over the quota; a pushed image is recorded by its manifest |
| `blob.delete` | `/v2/` blob `DELETE` |
| `auth.login`, `auth.logout` | `POST /auth/login` (a failed login is `auth.login` with `outcome` `failure`), `/auth/logout` |
| `auth.token` | `/auth/token` with credentials (a password or PAT: `docker login`, a client's pull or push) |
| `pat.create`, `pat.revoke` | `POST`, `DELETE /users/me/pat…` |
| `user.create`, `user.update`, `user.delete`, `user.password` | `POST /users`, `PATCH /users/:id` and `PUT /users/me`, `DELETE /users/:id`, `PUT /users/me/password` (and the command line's `user` commands) |
| `project.create`, `project.update`, `project.delete`, `project.quota`, `project.recount` | the project routes (and the command line's) |
| `import.create`, `import.cancel` | the import routes |
| `import.complete`, `import.fail` | an import's end, done by the server: the user is who asked for it, `address` and `trace_id` are `null`, `resource.message` says how it ended |
| `webhook.create`, `webhook.update`, `webhook.delete`, `webhook.test`, `webhook.redeliver` | the webhook routes |
| `system.gc` | `POST /system/gc` (and `gc run`) |

A request without any credentials that `/v2/` answers 401 (the token challenge every client meets first) is
not recorded; nor are anonymous token requests."""),

    # -- system --------------------------------------------------------------------------------------------
    Operation(
        "POST", "/api/v1/system/gc", "runGarbageCollection", "system", "Collect garbage now", "admin",
        one("gc_result"),
        description="""\
One run removes links from a repository to blobs none of that repository's manifests reference, then deletes
blobs no repository links. Nothing younger than `gc_grace_seconds` (default 3600) is touched, so a push in
progress is safe. The cluster also runs one each `gc_interval_seconds`, on one node at a time.

The run holds the cluster's collection lease, as a scheduled one does, and answers when it has finished; it
counts as the cluster's latest collection (the next scheduled one is `gc_interval_seconds` after it); one that
fails (503: the database or the blob store could not be reached) leaves the schedule as it was. While a
collection runs anywhere (scheduled, or asked for on any node, or by `gc run`), no second one starts: the
answer is 409 at once, and the caller may ask again later.""",
        errors=((20002, "`a garbage collection is already running (held by <host:pid:id>); try again when it has "
                        "finished`: another collection holds the lease (a node that died holding it frees it "
                        "after `gc_lease_seconds`)"),),
        example={"unlinked": 3, "deleted_blobs": 2, "freed_bytes": 100002}),

    # -- this reference ------------------------------------------------------------------------------------
    Operation(
        "GET", "/api/v1/openapi.json", "getOpenApiDocument", "reference", "This document", "anyone",
        raw(("application/json",), "the OpenAPI 3.1 document itself, not in the envelope", schema="openapi"),
        description="The OpenAPI 3.1 document of `/api/v1`, public like any published specification."),
    Operation(
        "GET", "/api/v1/docs", "getApiReference", "reference", "This reference as a web page", "anyone",
        raw(("text/html",), "an HTML page rendered on the server, not in the envelope"),
        description="The reference rendered from this document on the server: no script, no resource from "
                    "another origin (a strict `Content-Security-Policy`), so it reads offline."),
)

# Query parameters by the name operations use; ``name`` is what is sent.
QUERY_PARAMETERS = {
    "page": {"name": "page", "schema": {"type": "integer", "minimum": 1, "maximum": 1000000, "default": 1},
             "description": "1-based page number"},
    "page_size": {"name": "page_size", "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
                  "description": "items per page"},
    "user_search": {"name": "search", "schema": {"type": "string"},
                    "description": "a case-insensitive substring of the username, email or display name (its "
                                   "first 64 characters are used)"},
    "project_search": {"name": "search", "schema": {"type": "string"},
                       "description": "a case-insensitive substring of the name (its first 64 characters are used)"},
    "repository_search": {"name": "search", "schema": {"type": "string"},
                          "description": "a case-insensitive substring of the full name (its first 64 characters "
                                         "are used)"},
    "is_public": {"name": "is_public", "schema": {"enum": ["true", "false"]},
                  "description": "only public (`true`) or private (`false`) projects"},
    "force": {"name": "force", "schema": {"enum": ["true", "false"], "default": "false"},
              "description": "`true` deletes a project that still holds images"},
    "fix": {"name": "fix", "schema": {"enum": ["true", "false"], "default": "false"},
            "description": "`true` repairs the recorded usage"},
    "import_status": {"name": "status", "schema": {"enum": list(IMPORT_STATUSES)},
                      "description": "only tasks in this state"},
    "webhook_project": {"name": "project_id", "schema": {"type": "string"},
                        "description": "only this project's webhooks (its id)"},
    "delivery_status": {"name": "status", "schema": {"enum": list(DELIVERY_STATUSES)},
                        "description": "only deliveries in this state"},
    "event_type": {"name": "event_type", "schema": {"$ref": "#/components/schemas/EventType"},
                   "description": "only deliveries of this event type"},
    "audit_from": {"name": "from", "schema": {"type": "string", "format": "date-time"},
                   "description": "records at or after this ISO 8601 time (without an offset, UTC)"},
    "audit_to": {"name": "to", "schema": {"type": "string", "format": "date-time"},
                 "description": "records before this time"},
    "audit_username": {"name": "username", "schema": {"type": "string", "minLength": 1, "maxLength": 256},
                       "description": "exactly this recorded username"},
    "audit_user_id": {"name": "user_id", "schema": {"type": "string", "minLength": 1, "maxLength": 256},
                      "description": "this account's records"},
    "audit_project_id": {"name": "project_id", "schema": {"type": "string", "minLength": 1, "maxLength": 256},
                         "description": "this project's records"},
    "audit_operation": {"name": "operation", "schema": {"type": "array", "items": {"enum": list(AUDIT_OPERATIONS)}},
                        "explode": True, "description": "one or more operations (repeated, or comma-separated)"},
    "audit_outcome": {"name": "outcome", "schema": {"enum": list(AUDIT_OUTCOMES)},
                      "description": "success or failure"},
}

PATH_PARAMETERS = {
    "project_id": "the project's id or its name (a project named `statistics` must be addressed by its id)",
    "user_id": "the user's id",
    "pat_id": "the PAT's id",
    "task_id": "the import task's id",
    "repository": "the repository's path inside the project (`app` for `team-a/app`); its slashes may be sent as "
                  "they are or as `%2F`, and a path with a component named `tags` must use `%2F`",
    "tag": "a tag",
    "webhook_id": "the webhook's id",
    "delivery_id": "the delivery's id",
    "event_type": "an event type",
}
