"""The access policy's pure parts, in-process: PAT reach, project visibility, token scopes."""
import pytest

from services.access import RegistryCaller, can_see, can_write, registry_actions_for, visibility
from services.tokens import Scope, expand, granted, parse_scopes

OWNER = {"_id": "u1", "is_admin": False}
OTHER = {"_id": "u2", "is_admin": False}
ADMIN = {"_id": "u3", "is_admin": True}
PRIVATE = {"_id": "p1", "owner_id": "u1", "is_public": False}
PUBLIC = {"_id": "p2", "owner_id": "u1", "is_public": True}


@pytest.mark.parametrize("scopes, actions", [
    ([], set()),
    (["api:read", "api:write"], set()),
    (["registry:pull"], {"pull"}),
    (["registry:push"], {"pull", "push"}),
    (["registry:delete"], {"delete"}),
    (["registry:push", "registry:delete"], {"pull", "push", "delete"}),
])
def test_a_pats_scopes_bound_its_registry_actions(scopes, actions):
    assert registry_actions_for(scopes) == actions


def test_push_alone_never_deletes():
    assert "delete" not in registry_actions_for(["registry:pull", "registry:push"])


@pytest.mark.parametrize("user, project, seen", [
    (None, PUBLIC, True), (None, PRIVATE, False),
    (OWNER, PRIVATE, True), (OTHER, PRIVATE, False), (OTHER, PUBLIC, True), (ADMIN, PRIVATE, True),
])
def test_who_sees_a_project(user, project, seen):
    assert can_see(user, project) is seen


@pytest.mark.parametrize("user, project, writes", [
    (None, PUBLIC, False), (OWNER, PRIVATE, True), (OTHER, PUBLIC, False), (ADMIN, PUBLIC, True),
])
def test_who_writes_a_project(user, project, writes):
    assert can_write(user, project) is writes


@pytest.mark.parametrize("user, expected_query", [
    (None, {"is_public": True}),
    (OWNER, {"$or": [{"is_public": True}, {"owner_id": "u1"}]}),
    (ADMIN, {}),
])
def test_the_visibility_query_says_the_same_as_the_predicate(user, expected_query):
    assert visibility(user).query() == expected_query


def test_scope_parameters_split_on_spaces_and_skip_malformed_items():
    scopes = parse_scopes(["repository:p/a:pull,push repository:p/b:pull", "garbage", "registry:catalog:*"])

    assert scopes == [Scope("repository", "p/a", frozenset({"pull", "push"})),
                      Scope("repository", "p/b", frozenset({"pull"})),
                      Scope("registry", "catalog", frozenset({"*"}))]


def test_a_star_grants_every_action():
    assert expand({"*"}) == {"pull", "push", "delete"}


def test_a_caller_holds_only_what_its_token_grants():
    caller = RegistryCaller({"access": [{"type": "repository", "name": "p/a", "actions": ["pull"]}]})

    assert caller.holds("pull", "repository", "p/a")
    assert not caller.holds("push", "repository", "p/a")
    assert not caller.holds("pull", "repository", "p/b")
    assert not RegistryCaller().holds("pull", "repository", "p/a")
    assert granted({"access": None}, "repository", "p/a") == set()
