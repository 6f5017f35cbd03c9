"""bench/quality.py's baseline cache: runs of the same file at once keep each other's entries."""

import json
import sys

from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "bench"))
import quality  # noqa: E402


def _key(style: str, revision: int) -> str:
    return json.dumps([style, {}, 256, "noise", 0, [50], revision])


def test_saving_merges_with_entries_another_run_wrote(tmp_path):
    path = tmp_path / "baselines.json"
    mine = quality._load_cache(str(path))
    other_run = {_key("great_wave", quality.LBFGS_REVISION): {"noise_lbfgs_50": 2.0},
                 _key("old_step", quality.LBFGS_REVISION - 1): {"noise_lbfgs_50": 9.0}}
    path.write_text(json.dumps(other_run))
    mine[_key("starry_night", quality.LBFGS_REVISION)] = {"noise_lbfgs_50": 1.0}
    quality._save_cache(str(path), mine)
    saved = json.loads(path.read_text())
    assert set(saved) == {_key("starry_night", quality.LBFGS_REVISION), _key("great_wave", quality.LBFGS_REVISION)}
    assert mine == saved  # the run reuses what the other one measured
