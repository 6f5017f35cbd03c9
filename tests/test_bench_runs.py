"""The benchmark scripts that time the feed-forward network run end to end at toy sizes and print their JSON.

`--help` (tests/test_bench_scripts.py) does not reach the code that builds what is timed; these runs
do, so an API change that breaks a benchmark fails here rather than in the next person's measurement.
"""

import json
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]


def _run(script: str, *flags: str) -> dict:
    finished = subprocess.run([sys.executable, str(REPO_ROOT / "bench" / script), *flags], capture_output=True,
                              text=True, timeout=900, cwd=REPO_ROOT)
    assert finished.returncode == 0, finished.stderr[-3000:]
    return json.loads(finished.stdout.strip().splitlines()[-1])


def test_speed_bench_times_impasto_and_every_peer():
    figures = _run("speed.py", "--width", "0.125", "--sizes", "32", "--repeats", "1", "--no-conv")
    (result,) = figures["results"]
    assert set(result["runners"]) == {"impasto", "impasto_tf", "impasto_tf_xla", "impasto_litert",
                                      "onnxruntime", "litert", "tf", "tf_xla"}
    assert all(entry["median_ms"] > 0 and entry["max_abs_difference_from_first"] < 0.05
               for entry in result["runners"].values())
    assert result["impasto_engine"] in ("tf", "tf_xla", "litert")
    assert figures["environment"]["cpu"] and isinstance(figures["environment"]["vector_extensions"], list)


def test_litert_bench_compares_each_variant_with_the_savedmodel(export_bundle):
    figures = _run("litert_speed.py", "--model", str(export_bundle), "--sizes", "32", "--variants", "float32,float16",
                   "--repeats", "1")
    variants = figures["sizes"]["32"]["variants"]
    assert set(variants) == {"float32", "float16"} and variants["float32"]["psnr_db"] > 60
    assert figures["bytes"]["float16"] < figures["bytes"]["float32"]


def test_serving_forms_bench_times_one_export_served_both_ways():
    figures = _run("serving_forms.py", "--width", "0.125", "--sizes", "32", "--repeats", "1")
    (result,) = figures["results"]
    assert set(result["ms"]) == {"savedmodel", "tflite"} and min(result["ms"].values()) > 0
    assert result["max_abs_difference"] < 0.05
    assert figures["engine_choice"]["32"] in ("tf", "tf_xla", "litert")
