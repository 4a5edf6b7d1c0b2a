"""Project, repository and tag names by the distribution-spec grammar, in-process."""
import pytest

from services.errors import Invalid, NameInvalid, TagInvalid
from services.names import check_project_name, check_repository_name, check_tag


@pytest.mark.parametrize("name", ["p/app", "my-project/a/b/c", "p1/x.y_z__w---v", "a" * 64 + "/" + "b" * 190])
def test_valid_repository_names_split_off_their_project(name):
    assert check_repository_name(name) == (name.split("/")[0], name)


@pytest.mark.parametrize("name", ["app", "P/app", "p//app", "p/app/", "../etc/passwd", "p/.hidden", "p/a..b",
                                  "p/" + "a" * 254, "p/app\x00"])
def test_invalid_repository_names_are_refused(name):
    with pytest.raises(NameInvalid):
        check_repository_name(name)


@pytest.mark.parametrize("name", ["a", "my-project", "x.y", "a__b", "a" * 64])
def test_valid_project_names(name):
    check_project_name(name)


@pytest.mark.parametrize("name", ["", "A", "a/b", "-a", "a-", "a" * 65, "a b"])
def test_invalid_project_names_are_refused(name):
    with pytest.raises(Invalid):
        check_project_name(name)


@pytest.mark.parametrize("tag", ["latest", "v1.2.3", "_x", "A" * 128])
def test_valid_tags(tag):
    assert check_tag(tag) == tag


@pytest.mark.parametrize("tag", ["", ".x", "-x", "a" * 129, "a/b", "a:b"])
def test_invalid_tags_are_refused(tag):
    with pytest.raises(TagInvalid):
        check_tag(tag)
