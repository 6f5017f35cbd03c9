"""`impasto batch` on a real Beam DirectRunner: outputs, dead letters, manifest, reruns and a killed job."""

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from impasto.model import image_io
from impasto.serving.batch import paths, records
from impasto.serving.batch.job import BatchJob
from impasto.serving.batch.pipeline import WRITE_DELAY_ENV, run_batch

from conftest import REPO_ROOT

pytestmark = pytest.mark.slow  # each test runs a Beam pipeline (5 to 15 s)

IN_PROCESS = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]
GOOD = {"chelsea.png": "chelsea.png", "nested/coffee.jpg": "coffee.png", "nested/deeper/rocket.png": "rocket.png",
        "nested/deeper/koala.bmp": "koala.png"}
BAD = {"empty.jpg": ("edge_empty.jpg", "empty input"),
       "nested/noise.jpg": ("edge_random_bytes.jpg", "not a recognised"),
       "nested/deeper/cut.jpg": ("edge_truncated.jpg", ""), "bomb.png": ("edge_bomb_30000.png", "exceeds the limit")}


def _make_folder(folder: Path, data_dir: Path, good: dict = GOOD, long_side: int = 40) -> Path:
    """Small copies of test photos (various formats) and bad files, in nested folders."""
    for relative, source in good.items():
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        image = image_io.resize_long_side(image_io.load_image(data_dir / source), long_side)
        Image.fromarray(image_io.to_uint8(image)).save(target)
    for relative, (source, _) in BAD.items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(data_dir / source, folder / relative)
    return folder


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    """relative path -> (inode, mtime_ns) of every file below `folder`."""
    return {str(p.relative_to(folder)): (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file()}


def _pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, data_dir):
    """One finished in-process run over the test folder with the bundled starry_night model."""
    root = tmp_path_factory.mktemp("batch")
    inputs = _make_folder(root / "in", data_dir)
    job = BatchJob(input=str(inputs), output_dir=str(root / "out"), models=("starry_night",))
    summary = run_batch(job, IN_PROCESS)
    return job, inputs, root / "out", summary


def test_every_good_image_is_stylized_as_impasto_stylize_fast_does(finished_run):
    from impasto.model.cli import run as stylize

    job, inputs, out, summary = finished_run
    assert summary.written == len(GOOD)
    for relative in GOOD:
        output = out / Path(relative).with_suffix(".png")
        reference = output.parent / f"reference_{output.name}"
        assert stylize([str(inputs / relative), "--method", "fast", "--model", "starry_night", "--out", str(reference),
                        "--no-progress"]) == 0
        difference = np.abs(_pixels(output) - _pixels(reference))
        reference.unlink()
        assert difference.max() <= 1, relative


def test_bad_files_are_dead_lettered_with_their_reason(finished_run):
    _, inputs, out, summary = finished_run
    dead = {Path(record["input"]).relative_to(inputs).as_posix(): record
            for record in _read_jsonl(out / "dead_letter.jsonl")}
    assert sorted(dead) == sorted(BAD) and summary.dead_letters == len(BAD)
    for relative, (_, reason) in BAD.items():
        assert reason in dead[relative]["reason"] and relative in dead[relative]["reason"]
        assert dead[relative]["model"] is None
        assert not (out / Path(relative).with_suffix(".png")).exists()


def test_manifest_records_every_output_once(finished_run):
    _, inputs, out, _ = finished_run
    manifest = _read_jsonl(out / "manifest.jsonl")
    assert sorted(Path(r["input"]).relative_to(inputs).as_posix() for r in manifest) == sorted(GOOD)
    for record in manifest:
        assert record["model"] == "starry_night" and record["ms"] > 0
        assert Image.open(record["output"]).size == tuple(record["size"])
        assert Image.open(record["input"]).size == tuple(record["size"])
    written = {str(p.relative_to(out)) for p in out.rglob("*.png")}
    assert written == {str(Path(relative).with_suffix(".png")) for relative in GOOD}
    assert not list(out.rglob("*.tmp")) and not list(out.glob(".impasto-batch/*"))


def test_a_rerun_writes_nothing_and_a_new_input_alone_is_done(finished_run, data_dir):
    job, inputs, out, _ = finished_run
    before = _files(out)
    summary = run_batch(job, IN_PROCESS)
    assert summary.skipped_run and summary.written == 0 and _files(out) == before
    # One more photo: the pipeline runs, skips the recorded ones (and the dead letters) and does the new one.
    _make_folder(inputs, data_dir, {"nested/late.png": "puppy.png"})
    summary = run_batch(job, IN_PROCESS)
    assert not summary.skipped_run and (summary.written, summary.dead_letters) == (1, 0)
    after = _files(out)
    assert set(after) - set(before) == {"nested/late.png"}
    unchanged = {name: value for name, value in after.items() if not name.endswith(".jsonl")}
    assert all(before[name] == value for name, value in unchanged.items() if name in before)
    assert len(_read_jsonl(out / "manifest.jsonl")) == len(GOOD) + 1


def test_several_models_each_and_a_savedmodel(tmp_path, data_dir, serving_version_dir, export_network):
    """--assign each with a bundled model and an exported SavedModel (given by its model folder), as JPEG."""
    inputs = tmp_path / "in"
    (inputs / "b").mkdir(parents=True)
    photos = {"a.png": "chelsea.png", "b/c.png": "coffee.png"}
    for relative, source in photos.items():  # 64 x 64: the export's one bucket, where it equals the bare network.
        photo = image_io.resize_image(image_io.load_image(data_dir / source), 64, 64)
        Image.fromarray(image_io.to_uint8(photo)).save(inputs / relative)
    (inputs / "notes.txt").write_text("not an image: a folder input leaves it out")
    model_dir = serving_version_dir.parent
    job = BatchJob(input=str(inputs), output_dir=str(tmp_path / "out"), models=("great_wave", str(model_dir)),
                   format="jpg")
    assert run_batch(job, IN_PROCESS).written == 4
    assert sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*.jpg")) == [
        "great_wave/a.jpg", "great_wave/b/c.jpg", f"{model_dir.name}/a.jpg", f"{model_dir.name}/b/c.jpg"]
    for relative in photos:
        output = (tmp_path / "out" / model_dir.name / relative).with_suffix(".jpg")
        assert Image.open(output).format == "JPEG"
        photo = image_io.load_image(inputs / relative)
        expected = image_io.decode_image_bytes(image_io.encode_image(export_network(photo[None]).numpy()[0], "JPEG"))
        assert np.abs(_pixels(output) - expected).mean() < 0.5  # The same pixels, JPEG-encoded the same way.


def test_assignment_is_stable_and_hash_ignores_the_seed():
    job = BatchJob(input="x", output_dir="out", models=("great_wave", "starry_night"), assign="random", seed=1)
    names = [f"folder/{index}.jpg" for index in range(64)]
    drawn = [job.assigned(name) for name in names]
    assert drawn == [job.assigned(name) for name in names] and {m for [m] in drawn} == {"great_wave", "starry_night"}
    reseeded = BatchJob(input="x", output_dir="out", models=job.models, assign="random", seed=2)
    assert [reseeded.assigned(name) for name in names] != drawn
    hashed = [BatchJob(input="x", output_dir="out", models=job.models, assign="hash", seed=seed).assigned(names[5])
              for seed in (1, 2)]
    assert hashed[0] == hashed[1] and len(hashed[0]) == 1
    assert BatchJob(input="x", output_dir="out", models=job.models).assigned(names[0]) == list(job.models)


def test_inputs_with_the_same_output_name_keep_their_suffix(tmp_path, data_dir):
    inputs = _make_folder(tmp_path / "in", data_dir,
                          {"a.png": "chelsea.png", "a.jpg": "coffee.png", "b.png": "koala.png"})
    job = BatchJob(input=f"{inputs}/*.*g", output_dir=str(tmp_path / "out"), models=("starry_night",))
    run_batch(job, IN_PROCESS)
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["a.jpg.png", "a.png.png", "b.png"]


def test_input_patterns_and_relative_paths(tmp_path):
    assert paths.input_pattern(str(tmp_path)) == (f"{tmp_path}/**", str(tmp_path), True)
    expected = ("gs://bucket/photos/**/*.jpg", "gs://bucket/photos", False)
    assert paths.input_pattern("gs://bucket/photos/**/*.jpg") == expected
    assert paths.input_pattern("gs://bucket/photos/") == ("gs://bucket/photos/**", "gs://bucket/photos", True)
    assert paths.input_pattern("photos/a.jpg") == ("photos/a.jpg", "photos", False)
    assert paths.relative_path("gs://bucket/photos/a/b.jpg", "gs://bucket/photos") == "a/b.jpg"
    assert paths.wanted_in_folder("a/b.JPG") and not paths.wanted_in_folder("a/.b.png.123.tmp")
    assert not paths.wanted_in_folder(".hidden/b.png") and not paths.wanted_in_folder("notes.txt")


def test_missing_input_and_bad_flags_exit_2(tmp_path):
    from impasto.serving.batch.cli import run

    missing = str(tmp_path / "none" / "*.jpg")
    assert run(["--input", missing, "--output", str(tmp_path / "o"), "--model", "starry_night"]) == 2
    assert run(["--input", str(tmp_path), "--output", str(tmp_path / "o"), "--model", "starry_night,starry_night"]) == 2
    assert not (tmp_path / "o").exists()


def test_a_killed_multi_process_run_resumes_with_every_output_exactly_once(tmp_path, data_dir, monkeypatch):
    sources = ["chelsea.png", "coffee.png", "rocket.png", "koala.png", "puppy.png", "fruits.png"]
    good = {f"{'nested/' if index % 2 else ''}{index}_{name}": name for index, name in enumerate(sources * 2)}
    inputs = _make_folder(tmp_path / "in", data_dir, good, long_side=32)
    out = tmp_path / "out"
    command = [str(REPO_ROOT / ".venv" / "bin" / "impasto"), "batch", "--input", str(inputs), "--output", str(out),
               "--model", "starry_night", "--flush-seconds", "0.2", "--", "--direct_num_workers=2"]
    env = {**os.environ, WRITE_DELAY_ENV: "0.4"}
    job = subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    parts = out / records.PARTS_FOLDER
    deadline = time.monotonic() + 240
    try:
        while not list(parts.glob("manifest-*.jsonl")) and job.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait()
    recorded = [r for part in parts.glob("manifest-*.jsonl") for r in records.read_records(str(part))]
    stderr = job.stderr.read().decode()
    assert job.returncode == -signal.SIGKILL and 0 < len(recorded) < len(good), stderr[-3000:]
    # The workers loaded TensorFlow and ran the model without its start-up lines or Beam's worker warnings.
    noise = [line for line in stderr.splitlines() if "cuda" in line.lower() or "oneDNN" in line
             or ("WARN" in line and "apitools" not in line)]
    assert not noise, stderr[-3000:]
    recorded_files = {r["output"]: os.stat(r["output"]).st_ino for r in recorded}

    monkeypatch.delenv(WRITE_DELAY_ENV, raising=False)
    summary = run_batch(BatchJob(input=str(inputs), output_dir=str(out), models=("starry_night",)), IN_PROCESS)
    assert summary.dead_letters == len(BAD)
    manifest = _read_jsonl(out / "manifest.jsonl")
    outputs = sorted(record["output"] for record in manifest)
    expected = sorted(str(out / Path(relative).with_suffix(".png")) for relative in good)
    assert outputs == expected  # Each exactly once.
    written = sorted(str(p) for p in out.rglob("*") if p.is_file() and p.suffix != ".jsonl")
    assert written == expected  # No partial file.
    assert all(os.stat(path).st_ino == inode for path, inode in recorded_files.items())  # Recorded work is not redone.
    for path in expected:
        Image.open(path).load()
