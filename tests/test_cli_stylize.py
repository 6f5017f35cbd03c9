"""`impasto stylize` end to end, as a user runs it: real process, exit codes, files written or not."""

import re
import resource
import signal
import subprocess
import time

import pytest
from PIL import Image

from impasto.testing import IMPASTO_COMMAND

from conftest import as_foreground_process, run_cli_in_process

pytestmark = pytest.mark.subprocess


def _stylize(*args, timeout=300):
    return subprocess.run([*IMPASTO_COMMAND, "stylize", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    from impasto.model.feedforward.bundles import write_bundle
    from impasto.model.feedforward.transformer import TransformerNet

    path = tmp_path_factory.mktemp("bundle") / "tiny.npz"
    write_bundle(TransformerNet(width=0.125), {"width": 0.125, "style": "test"}, path)
    return path


def test_optimize_writes_the_image_and_snapshots(tmp_path, data_dir, tiny_vgg_file):
    out = tmp_path / "out.png"
    finished = _stylize(data_dir / "chelsea.png", "--style", data_dir / "starry_night.png", "--style",
                        data_dir / "great_wave.png", "--style-weights", "0.7,0.3", "--size", 64, "--iterations", 4,
                        "--save-every", 2, "--vgg-weights", tiny_vgg_file, "--out", out, "--no-progress",
                        "--preserve-color", "--pooling", "max")
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert max(Image.open(out).size) == 64
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png", "out_00002.png", "out_00004.png"]
    # No native error lines from TensorFlow (oneDNN logged one for a bool transpose in the L-BFGS bookkeeping).
    assert not re.search(r"^[EF]\d{4} ", finished.stderr, re.MULTILINE), finished.stderr[-2000:]


def test_fast_keeps_the_photo_size(tmp_path, data_dir, tiny_bundle):
    out = tmp_path / "fast.jpg"
    finished = _stylize("--method", "fast", "--model", tiny_bundle, data_dir / "koala.png", "--out", out)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert Image.open(out).size == Image.open(data_dir / "koala.png").size


@pytest.mark.parametrize("case", [
    ("missing content", ["{data}/nope.png", "--style", "{data}/starry_night.png"], "no such file"),
    ("corrupt style", ["{data}/chelsea.png", "--style", "{data}/edge_random_bytes.jpg"], "not a recognised image"),
    ("truncated content", ["{data}/edge_truncated.jpg", "--style", "{data}/starry_night.png"], "truncated"),
    ("bomb content", ["{data}/edge_bomb_30000.png", "--style", "{data}/starry_night.png"], "exceeds the limit"),
    ("blend weights", ["{data}/chelsea.png", "--style", "{data}/starry_night.png", "--style-weights", "1,2"],
     "one non-negative weight per --style"),
    ("unknown layer", ["{data}/chelsea.png", "--style", "{data}/starry_night.png", "--style-layers", "block9_conv1"],
     "unknown VGG layers"),
    ("unknown model", ["{data}/chelsea.png", "--model", "no_such_model"], "no model 'no_such_model'"),
    ("bad strength", ["{data}/chelsea.png", "--model", "x", "--strength", "2"], "--strength"),
], ids=lambda case: case[0])
def test_bad_input_exits_2_with_a_message_and_writes_nothing(tmp_path, data_dir, case, capsys):
    """In this process (`run_cli_in_process`); the test below and the Ctrl-C ones see a real process's exit."""
    _, args, message = case
    out = tmp_path / "out.png"
    code, stderr = run_cli_in_process(capsys, "stylize", *[a.format(data=data_dir) for a in args], "--out", out,
                                      "--iterations", 1, "--size", 32)
    assert code == 2
    assert message in stderr and "Traceback" not in stderr
    assert list(tmp_path.iterdir()) == []


def test_unknown_output_extension_is_refused_before_any_work(tmp_path, data_dir):
    finished = _stylize(data_dir / "chelsea.png", "--style", data_dir / "starry_night.png", "--out", tmp_path / "o.gif")
    assert finished.returncode == 2 and "unsupported output extension" in finished.stderr


def test_list_models_prints_one_name_a_line():
    from impasto.model.feedforward.bundles import bundled_model_names

    finished = _stylize("--list-models")
    assert finished.returncode == 0
    assert finished.stdout.split() == bundled_model_names()


def test_a_write_that_fails_midway_keeps_the_previous_output_and_leaves_no_partial_file(tmp_path, data_dir,
                                                                                        tiny_bundle):
    out = tmp_path / "out.png"
    out.write_bytes(b"the previous result")
    limit = 4096  # bytes any file of the process may reach: the stylized PNG is larger, so its write fails partway.
    finished = subprocess.run(
        [*IMPASTO_COMMAND, "stylize", "--method", "fast", "--model", str(tiny_bundle), str(data_dir / "chelsea.png"),
         "--out", str(out)], capture_output=True, text=True, timeout=300,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
    assert finished.returncode == 1, finished.stderr[-2000:]
    assert "File too large" in finished.stderr and "Traceback" not in finished.stderr
    assert out.read_bytes() == b"the previous result"
    assert [path.name for path in tmp_path.iterdir()] == ["out.png"]  # The temporary file was removed.


def test_ctrl_c_exits_130_without_a_traceback_or_an_output(tmp_path, data_dir, tiny_vgg_file):
    out = tmp_path / "out.png"
    process = subprocess.Popen(
        [*IMPASTO_COMMAND, "stylize", str(data_dir / "chelsea.png"), "--style", str(data_dir / "starry_night.png"),
         "--size", "48", "--iterations", "100000", "--tolerance", "0", "--save-every", "1",
         "--vgg-weights", str(tiny_vgg_file), "--out", str(out), "--no-progress"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, preexec_fn=as_foreground_process)
    deadline = time.monotonic() + 240
    while not (tmp_path / "out_00001.png").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)  # What Ctrl-C sends, once the optimization runs.
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-2000:]
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert not out.exists()
