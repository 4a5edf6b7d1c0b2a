"""The credentials key a node makes for itself in its data directory when none is configured."""
import multiprocessing

import pytest

from services.credentials import KEY_BYTES, load_key


def settings(data_dir):
    return {"credentials_key": None, "data_dir": str(data_dir)}


def key_of(data_dir):
    return load_key(settings(data_dir))


def key_at_once(data_dir, start, keys):
    start.wait()
    keys.put(key_of(data_dir))


def test_workers_starting_together_all_read_the_one_whole_key_the_first_wrote(tmp_path):
    context = multiprocessing.get_context("fork")
    start, keys = context.Barrier(16), context.Queue()
    workers = [context.Process(target=key_at_once, args=(tmp_path, start, keys)) for _ in range(16)]
    for worker in workers:
        worker.start()
    read = [keys.get(timeout=30) for _ in workers]
    for worker in workers:
        worker.join(30)

    assert {len(key) for key in read} == {KEY_BYTES}
    assert len(set(read)) == 1
    assert (tmp_path / "credentials.key").read_bytes() == read[0]
    assert [path.name for path in tmp_path.iterdir()] == ["credentials.key"]


def test_the_key_file_is_readable_by_its_owner_only(tmp_path):
    key_of(tmp_path)

    assert (tmp_path / "credentials.key").stat().st_mode & 0o777 == 0o600


def test_a_key_file_that_is_not_a_whole_key_stops_the_start_naming_it(tmp_path):
    (tmp_path / "credentials.key").write_bytes(b"")

    with pytest.raises(ValueError, match="credentials.key holds 0 bytes"):
        key_of(tmp_path)
