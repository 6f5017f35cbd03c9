"""Every benchmark script starts and answers --help (flags in, one JSON line out is their contract).

Run as scripts, they put bench/ first on sys.path, so a script named like a package that
TensorFlow imports (bench/litert.py once shadowed `litert`) breaks every other script.
"""

import subprocess
import sys

import pytest

from conftest import REPO_ROOT

BENCH_SCRIPTS = sorted(path.name for path in (REPO_ROOT / "bench").glob("*.py")
                       if path.name not in ("common.py", "harness.py", "bad_input_probes.py", "plain_onnx.py"))


@pytest.mark.subprocess
@pytest.mark.parametrize("script", BENCH_SCRIPTS)
def test_bench_script_answers_help(script):
    finished = subprocess.run([sys.executable, str(REPO_ROOT / "bench" / script), "--help"], capture_output=True,
                              text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert finished.stdout.startswith("usage:")
    assert "cuda" not in finished.stderr.lower(), f"TensorFlow's start-up lines reached stderr:\n{finished.stderr}"


@pytest.mark.subprocess
def test_a_bench_script_does_not_shadow_a_package_tensorflow_imports():
    """quality.py imports TensorFlow with bench/ first on the path, as every script does."""
    finished = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, 'bench'); import tensorflow"],
                              cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]


@pytest.mark.parametrize("folder", ["bench", "model", "training", "serving", "export"])
def test_test_helpers_live_in_impasto_testing_only(folder):
    """bench/ shares helpers with the tests through `impasto.testing`, never tests/; library code imports neither."""
    for path in (REPO_ROOT / folder).rglob("*.py"):
        text = path.read_text()
        assert "conftest" not in text and '"tests")' not in text, path
        if folder != "bench":
            assert "impasto.testing" not in text, path


@pytest.mark.subprocess
def test_cli_start_lays_out_every_folder_setup_installs(tmp_path):
    """bench/cli_start.py maps a tree as setup.py's package_dir does, reading the folders from that setup.py."""
    sys.path.insert(0, str(REPO_ROOT / "bench"))
    import cli_start

    root = cli_start.package_root(REPO_ROOT, tmp_path / "root")
    folders = cli_start.code_folders(REPO_ROOT)
    imports = "; ".join(f"import impasto.{folder}" for folder in folders)
    finished = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(root)!r}); {imports}; "
         "import impasto.training.config as c; print(c.__file__)"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert finished.stdout.strip().startswith(str(root)), finished.stdout
    assert {"model", "training", "serving", "export"} <= set(folders)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "setup.py").write_text("from setuptools import setup\nsetup(name='x')\n")
    with pytest.raises(ValueError, match="CODE_FOLDERS"):
        cli_start.code_folders(tmp_path / "other")
