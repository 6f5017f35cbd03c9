"""Atomic writes: all or nothing, readable by others."""

import os

import pytest

from impasto.model.files import atomic_directory, atomic_write_bytes


def test_atomic_directory_appears_whole_and_readable(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_directory(tmp_path / "1") as building:
            (building / "saved_model.pb").write_bytes(b"x")
            assert not (tmp_path / "1").exists()
    finally:
        os.umask(old)
    assert (tmp_path / "1" / "saved_model.pb").read_bytes() == b"x"
    assert (tmp_path / "1").stat().st_mode & 0o777 == 0o755


def test_failed_atomic_directory_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), atomic_directory(tmp_path / "2") as building:
        (building / "half").write_bytes(b"x")
        raise RuntimeError("export failed")
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_replaces_and_never_truncates(tmp_path):
    target = tmp_path / "model.json"
    atomic_write_bytes(target, b"old")
    with pytest.raises(TypeError):
        atomic_write_bytes(target, object())  # Fails inside the write, after the temporary file exists.
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.json"]
