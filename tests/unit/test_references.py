"""Image references normalised like the docker CLI, in-process."""
import pytest

from services.errors import Invalid
from services.references import parse_reference

D = "sha256:" + "a" * 64


@pytest.mark.parametrize("text, registry, repository, tag, digest", [
    ("nginx", "docker.io", "library/nginx", "latest", None),
    ("nginx:1.25", "docker.io", "library/nginx", "1.25", None),
    ("library/nginx", "docker.io", "library/nginx", "latest", None),
    ("docker.io/nginx", "docker.io", "library/nginx", "latest", None),
    ("index.docker.io/nginx:alpine", "docker.io", "library/nginx", "alpine", None),
    ("registry-1.docker.io/library/nginx", "docker.io", "library/nginx", "latest", None),
    ("bitnami/redis:7.2", "docker.io", "bitnami/redis", "7.2", None),
    ("docker.io/bitnami/redis", "docker.io", "bitnami/redis", "latest", None),
    ("ghcr.io/org/team/app:v1", "ghcr.io", "org/team/app", "v1", None),
    ("quay.io/prometheus/node-exporter", "quay.io", "prometheus/node-exporter", "latest", None),
    ("localhost/app", "localhost", "app", "latest", None),
    ("localhost:5000/x", "localhost:5000", "x", "latest", None),
    ("127.0.0.1:5000/team/app:2", "127.0.0.1:5000", "team/app", "2", None),
    ("registry.example.com:8443/a/b:c", "registry.example.com:8443", "a/b", "c", None),
    ("Registry.Example.COM/app", "registry.example.com", "app", "latest", None),
    (f"nginx@{D}", "docker.io", "library/nginx", None, D),
    (f"nginx:1.25@{D}", "docker.io", "library/nginx", "1.25", D),
    (f"localhost:5000/x@{D}", "localhost:5000", "x", None, D),
    ("gcr.io/distroless/static-debian12:nonroot", "gcr.io", "distroless/static-debian12", "nonroot", None),
    ("my-registry.local/app:TAG_1.2-rc", "my-registry.local", "app", "TAG_1.2-rc", None),
    ("[::1]:5000/app", "[::1]:5000", "app", "latest", None),
    ("a__b/c--d:e", "docker.io", "a__b/c--d", "e", None),
])
def test_references_normalise_like_the_docker_cli(text, registry, repository, tag, digest):
    reference = parse_reference(text)

    assert (reference.registry, reference.repository, reference.tag, reference.digest) == (
        registry, repository, tag, digest)


@pytest.mark.parametrize("text", [
    "", " nginx", "nginx ", "UPPER/case", "nginx:", "nginx:-bad", "nginx@sha256:123", "nginx@md5:" + "a" * 32,
    "a//b", "/nginx", "nginx/", "host:port:5000/x", "bad_host.com/app", "x" * 600, "nginx:" + "t" * 129,
    "registry.example.com/", "ex ample.com/app",
])
def test_unparsable_references_name_the_image_field(text):
    with pytest.raises(Invalid) as refused:
        parse_reference(text)

    assert refused.value.message.startswith("image: ")


@pytest.mark.parametrize("text, target", [
    ("nginx", "nginx"), ("docker.io/library/nginx:1", "nginx"), ("bitnami/redis", "bitnami/redis"),
    ("ghcr.io/library/x", "library/x"), ("localhost:5000/a/b", "a/b"),
])
def test_the_default_target_drops_docker_hubs_library_prefix(text, target):
    assert parse_reference(text).default_target == target


def test_docker_hub_is_asked_at_its_api_host():
    assert parse_reference("nginx").api_host == "registry-1.docker.io"
    assert parse_reference("localhost:5000/x").api_host == "localhost:5000"


def test_the_digest_decides_what_is_fetched():
    assert parse_reference(f"nginx:1.25@{D}").reference == D
    assert parse_reference("nginx:1.25").reference == "1.25"
