"""Listings: tags (sorted, paginated with n/last and Link), the catalog, and the /v2/ base endpoint."""
import re

import pytest

from tests.support.manifests import OCI_MANIFEST, assert_registry_error, list_tags, push_blob, push_image, put_manifest

TAGS = ["v10", "v2", "latest", "B", "a", "1.0", "_private", "a-b"]
CATALOG = "registry:catalog:*"
_LINK_RE = re.compile(r'^<([^>]+)>;\s*rel="next"$')


def tag_image(client, repo, tags):
    """One manifest under every tag of ``tags``."""
    pushed = push_image(client, repo, tags[0])
    for tag in tags[1:]:
        put_manifest(client, repo, tag, pushed.body, OCI_MANIFEST)


def next_link(response):
    """The URL of a Link: <...>; rel="next" header, None without one."""
    header = response.headers.get("Link")
    if header is None:
        return None
    match = _LINK_RE.match(header.strip())
    assert match, header
    return match.group(1)


def walk(client, first_path, key, scope, **params):
    """Follow rel="next" links from the first page; returns the pages' item lists."""
    pages = []
    response = client.request("GET", first_path, scope, params=params)
    while True:
        assert response.status_code == 200, response.text
        pages.append(response.json()[key])
        link = next_link(response)
        if link is None:
            return pages
        response = client.request("GET", link, scope)


# -- tags -----------------------------------------------------------------------------------------

def test_tags_are_listed_in_lexical_order(admin, repo):
    tag_image(admin, repo, TAGS)

    response = list_tags(admin, repo)

    assert response.status_code == 200
    assert response.json() == {"name": repo, "tags": sorted(TAGS)}
    assert "Link" not in response.headers


def test_tag_pages_of_n_follow_each_other_through_the_link_header(admin, repo):
    tag_image(admin, repo, TAGS)

    pages = walk(admin, f"/v2/{repo}/tags/list", "tags", f"repository:{repo}:pull", n=3)

    assert pages == [sorted(TAGS)[0:3], sorted(TAGS)[3:6], sorted(TAGS)[6:8]]


def test_n_and_last_answer_the_tags_after_last(admin, repo):
    tag_image(admin, repo, TAGS)
    ordered = sorted(TAGS)

    response = list_tags(admin, repo, n=2, last=ordered[2])

    assert response.json()["tags"] == ordered[3:5]
    assert next_link(response) is not None


def test_last_without_n_answers_every_tag_after_it(admin, repo):
    tag_image(admin, repo, TAGS)
    ordered = sorted(TAGS)

    response = list_tags(admin, repo, last=ordered[4])

    assert response.json()["tags"] == ordered[5:]


def test_n_beyond_the_tag_count_answers_every_tag_without_a_link(admin, repo):
    tag_image(admin, repo, TAGS)

    response = list_tags(admin, repo, n=100)

    assert response.json()["tags"] == sorted(TAGS)
    assert "Link" not in response.headers


def test_the_last_full_page_has_no_link(admin, repo):
    tag_image(admin, repo, TAGS[:4])

    response = list_tags(admin, repo, n=4)

    assert response.json()["tags"] == sorted(TAGS[:4])
    assert "Link" not in response.headers


def test_n_of_zero_answers_an_empty_list_without_a_link(admin, repo):
    tag_image(admin, repo, TAGS)

    response = list_tags(admin, repo, n=0)

    assert response.status_code == 200
    assert response.json() == {"name": repo, "tags": []}
    assert "Link" not in response.headers


@pytest.mark.parametrize("n", ["abc", "-1", "1.5"])
def test_an_invalid_n_is_400(admin, repo, n):
    tag_image(admin, repo, TAGS[:2])

    response = list_tags(admin, repo, n=n)

    assert_registry_error(response, 400)


def test_a_repository_without_tags_lists_none(admin, repo):
    push_blob(admin, repo, b"a blob makes the repository")

    response = list_tags(admin, repo)

    assert response.status_code == 200
    assert response.json() == {"name": repo, "tags": []}


def test_tags_of_an_unknown_repository_are_name_unknown(admin, repo):
    response = list_tags(admin, repo)

    assert_registry_error(response, 404, "NAME_UNKNOWN")


# -- catalog --------------------------------------------------------------------------------------

@pytest.fixture
def three_repositories(admin, repo):
    """``<repo>/a``, ``<repo>/b``, ``<repo>/c``: together in the catalog right after the name ``repo``."""
    names = [f"{repo}/{suffix}" for suffix in "abc"]
    for name in names:
        push_blob(admin, name, name.encode())
    return names


def test_the_catalog_lists_repositories_in_order(admin, three_repositories):
    response = admin.request("GET", "/v2/_catalog", CATALOG)

    assert response.status_code == 200
    listed = response.json()["repositories"]
    assert listed == sorted(listed)
    assert set(three_repositories) <= set(listed)


def test_catalog_pages_follow_each_other_through_the_link_header(admin, repo, three_repositories):
    first = admin.request("GET", "/v2/_catalog", CATALOG, params={"n": 2, "last": repo})
    second = admin.request("GET", next_link(first), CATALOG)

    assert first.status_code == 200
    assert first.json()["repositories"] == three_repositories[:2]
    assert second.status_code == 200
    assert second.json()["repositories"][0] == three_repositories[2]


def test_an_administrator_whose_token_lacks_the_catalog_scope_is_told_to_fetch_one(admin, three_repositories):
    response = admin.request("GET", "/v2/_catalog", f"repository:{three_repositories[0]}:pull")

    assert_registry_error(response, 401, "UNAUTHORIZED")
    assert 'scope="registry:catalog:*"' in response.headers["WWW-Authenticate"]


def test_the_catalog_challenges_an_anonymous_client_for_a_catalog_token(anonymous, registry):
    response = anonymous.request("GET", "/v2/_catalog")

    assert_registry_error(response, 401, "UNAUTHORIZED")
    assert response.headers["WWW-Authenticate"] == \
        f'Bearer realm="{registry.url}/auth/token",service="cyp-registry",scope="{CATALOG}"'


# -- /v2/ -----------------------------------------------------------------------------------------

def test_the_base_endpoint_answers_200_with_a_token(admin):
    response = admin.request("GET", "/v2/", "")

    assert response.status_code == 200


def test_the_base_endpoint_answers_401_with_a_bearer_challenge_without_one(anonymous, registry):
    response = anonymous.request("GET", "/v2/")

    assert_registry_error(response, 401, "UNAUTHORIZED")
    assert response.headers["WWW-Authenticate"] == \
        f'Bearer realm="{registry.url}/auth/token",service="cyp-registry"'
