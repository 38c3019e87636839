import os

import pytest

from frozenseg.utils.file_io import atomic_write


def test_atomic_write_replaces_on_success(tmp_path):
    path = tmp_path / "sub" / "out.txt"
    with atomic_write(path, "w") as f:
        f.write("first")
    with atomic_write(path, "w") as f:
        f.write("second")
        assert path.read_text() == "first"  # the old file is intact until the rename
    assert path.read_text() == "second"
    assert os.listdir(path.parent) == ["out.txt"]


def test_atomic_write_leaves_old_file_and_no_temp_on_error(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_write(path) as f:
            f.write(b"partial")
            raise RuntimeError("killed")
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_atomic_write_rejects_append_mode(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        with atomic_write(tmp_path / "x", "a"):
            pass


def test_atomic_write_gives_the_permissions_open_would(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "a.json", "w") as f:
            f.write("{}")
        with open(tmp_path / "b.json", "w") as f:
            f.write("{}")
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "a.json").stat().st_mode == (tmp_path / "b.json").stat().st_mode
