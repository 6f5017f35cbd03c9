"""A resumed run's history ends at the checkpoint that restored: records past it are cut, a gap becomes untimed."""

from impasto.model.cpu import this_cpu
from impasto.training.config import TrainConfig
from impasto.training.history import UNTIMED_NOTE, history_up_to, segment, span, total_wall_seconds

BUNDLE = {"steps": "0-600", "wall_seconds": 1342.2, "model": "starry_night"}
WIDENED = {"steps": "600-600", "wall_seconds": 0.0, "widened": {"from_width": 0.5, "to_width": 1.0}}


def _run_segment(first: int, last: int) -> dict:
    return segment(TrainConfig.tiny(), first, last, seconds=2.0 * (last - first))


def test_a_record_that_matches_the_checkpoint_is_kept_as_it_is():
    history = [BUNDLE, WIDENED, _run_segment(600, 700)]
    assert history_up_to(history, 700) == history
    assert history_up_to([BUNDLE, WIDENED], 600) == [BUNDLE, WIDENED]  # A widening has no steps to lose.


def test_steps_recorded_past_the_restored_checkpoint_are_cut():
    history = [BUNDLE, _run_segment(600, 800), _run_segment(800, 900)]
    cut = history_up_to(history, 700)
    assert [entry["steps"] for entry in cut] == ["0-600", "600-700"]
    assert cut[1]["recipe"] == history[1]["recipe"] and history[1]["steps"] == "600-800"  # Not changed in place.


def test_steps_trained_but_never_recorded_become_an_untimed_segment():
    filled = history_up_to([BUNDLE, WIDENED], 650)
    assert filled[:2] == [BUNDLE, WIDENED]
    assert filled[2] == {"steps": "600-650", "wall_seconds": None, "note": UNTIMED_NOTE}
    assert history_up_to([], 40) == [{"steps": "0-40", "wall_seconds": None, "note": UNTIMED_NOTE}]


def test_a_segment_has_its_steps_rate_and_recipe_and_totals_skip_untimed_ones():
    entry = _run_segment(600, 610)
    config = TrainConfig.tiny()
    assert span(entry) == (600, 610) and entry["wall_seconds"] == 20.0
    assert entry["images_per_second"] == round(10 * config.batch_size / 20.0, 3)
    assert entry["recipe"]["schedule_steps"] == config.steps and entry["recipe"]["width"] == config.width
    assert entry["recipe"]["image_size"] == config.image_size
    assert entry["recipe"]["max_short_side_scale"] == config.max_short_side_scale
    assert entry["machine"] == this_cpu().key()
    assert total_wall_seconds([BUNDLE, entry, history_up_to([entry], 615)[-1]]) == 1362.2
