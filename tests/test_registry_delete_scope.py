"""registry:delete is what deletes: a PAT with registry:push pulls and pushes but never deletes."""
from tests.support.api_client import jwt_claims
from tests.support.manifests import assert_registry_error, get_blob, get_manifest, push_image
from tests.support.registry_client import RegistryClient


def pat_client(registry, admin_api, *scopes):
    return RegistryClient(registry.url, "admin", admin_api.create_pat(list(scopes))["token"])


def granted(client, repo):
    token = client.token(f"repository:{repo}:pull,push,delete")
    return sorted(a for entry in jwt_claims(token)["access"] if entry["name"] == repo for a in entry["actions"])


def test_the_token_endpoint_grants_a_push_pat_no_delete(registry, admin_api, repo):
    assert granted(pat_client(registry, admin_api, "registry:push"), repo) == ["pull", "push"]


def test_the_token_endpoint_grants_a_delete_pat_delete(registry, admin_api, repo):
    assert granted(pat_client(registry, admin_api, "registry:delete"), repo) == ["delete"]


def test_a_password_login_still_gets_every_action_its_user_has(admin, repo):
    assert granted(admin, repo) == ["delete", "pull", "push"]


def test_a_push_pat_cannot_delete_a_manifest_and_is_told_which_scope_it_needs(registry, admin, admin_api, repo):
    image = push_image(admin, repo, "v1")
    client = pat_client(registry, admin_api, "registry:pull", "registry:push")

    response = client.request("DELETE", f"/v2/{repo}/manifests/{image.digest}", f"repository:{repo}:delete")

    assert_registry_error(response, 403, "DENIED")
    assert "registry:delete" in response.json()["errors"][0]["message"]
    assert get_manifest(admin, repo, "v1").status_code == 200


def test_a_push_pat_cannot_delete_a_tag(registry, admin, admin_api, repo):
    push_image(admin, repo, "v1")
    client = pat_client(registry, admin_api, "registry:push")

    response = client.request("DELETE", f"/v2/{repo}/manifests/v1", f"repository:{repo}:delete")

    assert_registry_error(response, 403, "DENIED")
    assert get_manifest(admin, repo, "v1").status_code == 200


def test_a_push_pat_cannot_delete_a_blob(registry, admin, admin_api, repo):
    image = push_image(admin, repo, "v1")
    layer = list(image.blobs)[1]
    client = pat_client(registry, admin_api, "registry:push")

    response = client.request("DELETE", f"/v2/{repo}/blobs/{layer}", f"repository:{repo}:delete")

    assert_registry_error(response, 403, "DENIED")
    assert get_blob(admin, repo, layer).status_code == 200


def test_a_delete_pat_deletes_a_manifest(registry, admin, admin_api, repo):
    image = push_image(admin, repo, "v1")
    client = pat_client(registry, admin_api, "registry:delete")

    response = client.request("DELETE", f"/v2/{repo}/manifests/{image.digest}", f"repository:{repo}:delete")

    assert response.status_code == 202
    assert get_manifest(admin, repo, image.digest).status_code == 404
