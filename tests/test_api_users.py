"""/api/v1/users/me: profile, password change, avatar, token info and notification settings."""
import datetime
import os

import pytest

from tests.support.api_client import SESSION_SCOPES, Api, fresh_address, jwt_claims, ok, refused, strong_password

AVATAR_LIMIT = 2 * 1024 * 1024


def png(size=256):
    return b"\x89PNG\r\n\x1a\n" + os.urandom(size)


def jpeg(size=256):
    return b"\xff\xd8\xff\xe0" + os.urandom(size)


def webp(size=256):
    payload = b"WEBPVP8 " + os.urandom(size)
    return b"RIFF" + len(payload).to_bytes(4, "little") + payload


def parse_time(value):
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


def upload_avatar(api, data, content_type="application/octet-stream"):
    return api.post("/api/v1/users/me/avatar", data=data, headers={"Content-Type": content_type})


# -- profile --------------------------------------------------------------------------------------

def test_get_me_answers_the_callers_public_profile(user):
    me = ok(user.api.get("/api/v1/users/me"))

    assert me["id"] == user.id
    assert me["username"] == user.username
    assert me["is_admin"] is False and me["disabled"] is False
    assert me["avatar_url"] is None
    assert "password" not in me and "password_hash" not in me


def test_get_me_without_a_token_answers_30001(api):
    refused(api.get("/api/v1/users/me"), 30001)


def test_put_me_updates_the_profile_fields_and_stores_them(user, db):
    changes = {"display_name": "Grace Hopper", "bio": "compilers", "email": f"{user.username}@example.com"}

    data = ok(user.api.put("/api/v1/users/me", json=changes))

    assert {k: data[k] for k in changes} == changes
    assert {k: ok(user.api.get("/api/v1/users/me"))[k] for k in changes} == changes
    stored = db.users.find_one({"_id": user.id})
    assert {k: stored[k] for k in changes} == changes


def test_put_me_can_clear_the_email(user, db):
    ok(user.api.put("/api/v1/users/me", json={"email": "someone@example.com"}))

    assert ok(user.api.put("/api/v1/users/me", json={"email": None}))["email"] is None
    assert db.users.find_one({"_id": user.id})["email"] is None


@pytest.mark.parametrize("body, field", [
    ({"email": "not-an-email"}, "email"),
    ({"display_name": ""}, "display_name"),
    ({"display_name": "d" * 65}, "display_name"),
    ({"bio": ["a list"]}, "bio"),
    ({"username": "renamed"}, "username"),
    ({"is_admin": True}, "is_admin"),
    ({"disabled": False}, "disabled"),
    ({"password_hash": "x"}, "password_hash"),
])
def test_put_me_refuses_a_field_it_does_not_allow_with_10001_and_changes_nothing(user, db, body, field):
    before = db.users.find_one({"_id": user.id})

    message = refused(user.api.put("/api/v1/users/me", json=body), 10001)

    assert field in message
    assert db.users.find_one({"_id": user.id}) == before


def test_put_me_with_an_empty_object_answers_10001(user):
    refused(user.api.put("/api/v1/users/me", json={}), 10001)


# -- password -------------------------------------------------------------------------------------

def test_changing_the_password_with_a_wrong_old_password_answers_30003_and_keeps_the_old_one(user, db):
    hash_before = db.users.find_one({"_id": user.id})["password_hash"]

    response = user.api.put("/api/v1/users/me/password",
                            json={"old_password": "Not-the-password-1", "new_password": strong_password()})

    refused(response, 30003)
    assert db.users.find_one({"_id": user.id})["password_hash"] == hash_before
    assert ok(user.api.get("/api/v1/users/me"))["id"] == user.id


@pytest.mark.parametrize("weak", ["Sh0rt!", "alllowercaseletters", "12345678901234", "{username}-X9x"])
def test_changing_to_a_weak_password_answers_10001_naming_new_password(user, db, weak):
    hash_before = db.users.find_one({"_id": user.id})["password_hash"]

    message = refused(user.api.put("/api/v1/users/me/password",
                                   json={"old_password": user.password,
                                         "new_password": weak.format(username=user.username)}), 10001)

    assert "new_password" in message
    assert db.users.find_one({"_id": user.id})["password_hash"] == hash_before


def test_changing_the_password_ends_the_users_other_sessions_but_not_the_current_one(registry, user, api, db):
    other = api.session(user.username, user.password)
    new_password = strong_password()

    assert ok(user.api.put("/api/v1/users/me/password",
                           json={"old_password": user.password, "new_password": new_password})) is None

    refused(other.get("/api/v1/users/me"), 30002)
    refused(api.post("/api/v1/auth/refresh", json={"refresh_token": other.tokens["refresh_token"]}), 30002)
    assert ok(user.api.get("/api/v1/users/me"))["id"] == user.id
    assert ok(api.post("/api/v1/auth/refresh", json={"refresh_token": user.api.tokens["refresh_token"]}))
    assert db.sessions.find_one({"_id": jwt_claims(other.tokens["access_token"])["sid"]})["revoked"] is True


def test_after_a_password_change_only_the_new_password_logs_in(registry, user, api):
    new_password = strong_password()
    ok(user.api.put("/api/v1/users/me/password", json={"old_password": user.password, "new_password": new_password}))

    assert ok(api.login_response(user.username, new_password))["access_token"]
    refused(Api(registry.url, address=fresh_address()).login_response(user.username, user.password), 30001)


def test_changing_the_password_with_a_missing_field_answers_10001(user):
    message = refused(user.api.put("/api/v1/users/me/password", json={"new_password": strong_password()}), 10001)

    assert "old_password" in message


# -- avatar ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("make, media_type", [(png, "image/png"), (jpeg, "image/jpeg"), (webp, "image/webp")])
def test_an_uploaded_avatar_is_served_back_identical_with_its_type(admin_api, user, make, media_type):
    image = make(4096)

    data = ok(upload_avatar(user.api, image))

    assert data["avatar_url"] == f"/api/v1/users/{user.id}/avatar"
    own = user.api.get("/api/v1/users/me/avatar")
    by_id = admin_api.get(f"/api/v1/users/{user.id}/avatar")
    for response in (own, by_id):
        assert response.status_code == 200
        assert response.headers["Content-Type"] == media_type
        assert response.content == image
    assert ok(user.api.get("/api/v1/users/me"))["avatar_url"] == f"/api/v1/users/{user.id}/avatar"


def test_a_new_avatar_replaces_the_old_one(user):
    ok(upload_avatar(user.api, png()))
    newer = jpeg()

    ok(upload_avatar(user.api, newer))

    response = user.api.get("/api/v1/users/me/avatar")
    assert response.headers["Content-Type"] == "image/jpeg" and response.content == newer


def test_another_user_can_fetch_an_avatar_by_user_id(make_user):
    owner, viewer = make_user(), make_user()
    image = png()
    ok(upload_avatar(owner.api, image))

    response = viewer.api.get(f"/api/v1/users/{owner.id}/avatar")

    assert response.status_code == 200 and response.content == image


@pytest.mark.parametrize("body", [
    b"GIF89a" + b"\x00" * 64,
    b"just some text, not an image",
    b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
    b"RIFF\x10\x00\x00\x00WAVEfmt " + b"\x00" * 16,
    b"\x89PN",
])
def test_an_avatar_that_is_not_png_jpeg_or_webp_answers_10001_and_changes_nothing(user, db, body):
    before = db.users.find_one({"_id": user.id})["avatar"]

    message = refused(upload_avatar(user.api, body, "image/png"), 10001)

    assert "avatar" in message
    assert db.users.find_one({"_id": user.id})["avatar"] == before
    refused(user.api.get("/api/v1/users/me/avatar"), 20001)


def test_an_empty_avatar_upload_answers_10001(user):
    refused(upload_avatar(user.api, b""), 10001)


def test_an_avatar_over_2_mib_answers_10003_and_keeps_the_previous_one(user, db):
    previous = png()
    ok(upload_avatar(user.api, previous))

    response = upload_avatar(user.api, png(AVATAR_LIMIT))

    refused(response, 10003)
    assert user.api.get("/api/v1/users/me/avatar").content == previous
    assert db.users.find_one({"_id": user.id})["avatar"]["size"] == len(previous)


def test_an_avatar_of_exactly_2_mib_is_accepted(user):
    image = png(AVATAR_LIMIT - 8)

    ok(upload_avatar(user.api, image))

    assert user.api.get("/api/v1/users/me/avatar").content == image


def test_a_user_without_an_avatar_answers_20001(admin_api, user):
    refused(user.api.get("/api/v1/users/me/avatar"), 20001)
    refused(admin_api.get(f"/api/v1/users/{user.id}/avatar"), 20001)


def test_an_avatar_needs_a_token(api, user):
    refused(upload_avatar(api, png()), 30001)
    refused(api.get(f"/api/v1/users/{user.id}/avatar"), 30001)


# -- token info -----------------------------------------------------------------------------------

def test_token_info_for_a_session_token_names_the_session_its_scopes_and_times(user):
    info = ok(user.api.get("/api/v1/users/me/token-info"))

    claims = jwt_claims(user.api.tokens["access_token"])
    assert info["type"] == "session"
    assert (info["user_id"], info["username"]) == (user.id, user.username)
    assert sorted(info["scopes"]) == SESSION_SCOPES
    assert info["session_id"] == claims["sid"]
    assert int(parse_time(info["expires_at"]).timestamp()) == user.api.tokens["expires_at"]
    assert int(parse_time(info["issued_at"]).timestamp()) == claims["iat"]
    assert info.get("pat_name") is None


def test_token_info_for_a_personal_access_token_names_it_and_its_scopes(api, user):
    pat = user.api.create_pat(["api:read", "registry:pull"], name="ci-reader")

    info = ok(api.get("/api/v1/users/me/token-info", token=pat["token"]))

    assert info["type"] == "pat"
    assert info["pat_name"] == "ci-reader"
    assert info["pat_id"] == pat["id"]
    assert sorted(info["scopes"]) == ["api:read", "registry:pull"]
    assert (info["user_id"], info["username"]) == (user.id, user.username)
    # MongoDB keeps milliseconds; the creation answer may carry microseconds.
    assert abs(parse_time(info["issued_at"]) - parse_time(pat["created_at"])) < datetime.timedelta(milliseconds=1)
    assert info["expires_at"] is None
    assert pat["token"] not in str(info)


# -- notification settings ------------------------------------------------------------------------

def test_notification_settings_start_with_the_defaults(user):
    settings = ok(user.api.get("/api/v1/users/me/notification-settings"))

    assert settings["email_enabled"] is False
    assert settings["events"] and all(value is True for value in settings["events"].values())


def test_updating_notification_settings_merges_and_stores_them(user, db):
    before = ok(user.api.get("/api/v1/users/me/notification-settings"))

    updated = ok(user.api.put("/api/v1/users/me/notification-settings",
                              json={"email_enabled": True, "events": {"push": False}}))

    expected = {"email_enabled": True, "events": {**before["events"], "push": False}}
    assert updated == expected
    assert ok(user.api.get("/api/v1/users/me/notification-settings")) == expected
    assert db.users.find_one({"_id": user.id})["notification_settings"] == expected


@pytest.mark.parametrize("body, field", [
    ({"email_enabled": "yes"}, "email_enabled"),
    ({"events": {"push": 1}}, "events.push"),
    ({"events": {"nuclear_launch": True}}, "nuclear_launch"),
    ({"sms_enabled": True}, "sms_enabled"),
    ({"events": []}, "events"),
])
def test_invalid_notification_settings_answer_10001_naming_the_field_and_change_nothing(user, db, body, field):
    before = db.users.find_one({"_id": user.id})["notification_settings"]

    message = refused(user.api.put("/api/v1/users/me/notification-settings", json=body), 10001)

    assert field in message
    assert db.users.find_one({"_id": user.id})["notification_settings"] == before


def test_empty_notification_settings_answer_10001(user):
    refused(user.api.put("/api/v1/users/me/notification-settings", json={}), 10001)


def test_an_avatar_streamed_without_a_length_over_the_limit_is_refused(user):
    def chunks():
        yield b"\x89PNG\r\n\x1a\n" + b"\0" * 1024
        for _ in range(3):
            yield b"\0" * (1024 * 1024)

    response = upload_avatar(user.api, chunks(), "image/png")

    refused(response, 10003)
    assert ok(user.api.get("/api/v1/users/me"))["avatar_url"] is None
