"""Training survives being killed: kill -9 mid-run, then the same command resumes and finishes."""

import json
import signal
import subprocess
import time

import tensorflow as tf

from conftest import REPO_ROOT

IMPASTO = str(REPO_ROOT / ".venv" / "bin" / "impasto")


def test_kill_9_then_the_same_command_resumes_and_finishes(tmp_path, photo_dir, data_dir, tiny_vgg_file):
    run_dir = tmp_path / "run"
    command = [IMPASTO, "train", "--style", str(data_dir / "great_wave.png"), "--data", str(photo_dir),
               "--out", str(run_dir), "--preset", "tiny", "--steps", "16", "--checkpoint-every", "1",
               "--vgg-weights", str(tiny_vgg_file), "--no-progress"]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and first.poll() is None:
        latest = tf.train.latest_checkpoint(str(run_dir / "checkpoints"))
        if latest and int(latest.rsplit("-", 1)[1]) >= 3:
            break
        time.sleep(0.05)
    assert first.poll() is None, "training ended before it could be killed"
    first.send_signal(signal.SIGKILL)  # Likely while it writes a checkpoint: one is written every step.
    first.wait()
    killed_at = int(tf.train.latest_checkpoint(str(run_dir / "checkpoints")).rsplit("-", 1)[1])
    assert 3 <= killed_at < 16

    second = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    summary = json.loads(second.stdout.strip().splitlines()[-1])
    assert summary["steps"] == 16
    assert tf.train.latest_checkpoint(str(run_dir / "checkpoints")).endswith("ckpt-16")
    bundle = json.loads((run_dir / "bundle.json").read_text())
    assert bundle["steps"] == 16 and bundle["train_config"]["steps"] == 16
