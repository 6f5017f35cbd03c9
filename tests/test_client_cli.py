"""`impasto client` against the real `impasto serve` (tiny_server)."""

import shutil
import subprocess
from pathlib import Path

import pytest

from impasto.model import image_io
from impasto.serving import client_cli
from impasto.testing import IMPASTO_COMMAND, free_port


def _photo_tree(root: Path, small_images: dict, data_dir: Path) -> Path:
    """photos/{chelsea,coffee}.png, photos/sub/{rocket,koala}.png, photos/broken.jpg (random bytes), notes.txt."""
    folder = root / "photos"
    (folder / "sub").mkdir(parents=True)
    for name in ("chelsea.png", "coffee.png"):
        (folder / name).write_bytes(small_images[name])
    for name in ("rocket.png", "koala.png"):
        (folder / "sub" / name).write_bytes(small_images[name])
    shutil.copy(data_dir / "edge_random_bytes.jpg", folder / "broken.jpg")
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_directory_with_a_corrupt_file_reports_it_and_writes_the_rest(tiny_server, small_images, data_dir, tmp_path,
                                                                       capsys):
    photos = _photo_tree(tmp_path, small_images, data_dir)
    out = tmp_path / "out"
    code = client_cli.run([str(photos), str(tmp_path / "missing.png"), "--out", str(out),
                           "--server", tiny_server.target, "--model", "tiny", "--concurrency", "3", "--no-progress"])
    assert code == 2  # Every failure was bad input.
    written = sorted(str(path.relative_to(out)) for path in out.rglob("*"))
    assert written == ["chelsea.png", "coffee.png", "sub", "sub/koala.png", "sub/rocket.png"]
    for name in ("chelsea.png", "coffee.png"):
        assert image_io.load_image(out / name).shape == image_io.decode_image_bytes(small_images[name]).shape
    err = capsys.readouterr().err
    assert "broken.jpg: INVALID_ARGUMENT" in err and "missing.png: cannot read" in err
    assert "stylized 4 of 6 images" in err


def test_model_mismatch_and_unreachable_server_exit_codes(tiny_server, small_images, tmp_path, capsys):
    image = tmp_path / "koala.png"
    image.write_bytes(small_images["koala.png"])
    args = [str(image), "--out", str(tmp_path / "out"), "--no-progress", "--retries", "1"]
    assert client_cli.run(args + ["--server", tiny_server.target, "--model", "wrong"]) == 2
    assert "missing input 'image_bytes'" in capsys.readouterr().err
    assert client_cli.run(args + ["--server", f"127.0.0.1:{free_port()}", "--model", "tiny"]) == 1
    assert "UNAVAILABLE" in capsys.readouterr().err
    assert client_cli.run(args + ["--server", tiny_server.target, "--model", "tiny", "--strength", "0.5"]) == 2
    assert not (tmp_path / "out").exists()


@pytest.mark.subprocess
def test_impasto_client_command_with_controls(tiny_server, small_images, tmp_path):
    inputs = []
    for name in ("chelsea.png", "koala.png"):
        (tmp_path / name).write_bytes(small_images[name])
        inputs.append(str(tmp_path / name))
    result = subprocess.run([*IMPASTO_COMMAND, "client", *inputs, "--out", str(tmp_path / "out"), "--server",
                             tiny_server.target, "--model", "tiny", "--signature", "stylize_controls",
                             "--strength", "0", "--version", "1"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "stylized 2 of 2 images" in result.stderr
    for name in ("chelsea.png", "koala.png"):
        original = image_io.decode_image_bytes(small_images[name])
        assert abs(image_io.load_image(tmp_path / "out" / name) - original).max() <= 1  # Strength 0: the photo.
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["chelsea.png", "koala.png"]  # No temporaries.
