"""bench/quality.py's L-BFGS baselines: the objective of the iterate and of the image the method delivers."""

import dataclasses
import sys

import numpy as np
import pytest

from impasto.model import image_io
from impasto.model.feedforward.transformer import TransformerNet
from impasto.model.lossnet.loss_config import LossConfig
from impasto.model.optimize.gatys import white_noise

from conftest import REPO_ROOT, load_test_image

sys.path.insert(0, str(REPO_ROOT / "bench"))
import quality  # noqa: E402

STYLE_SIZE = 96


@pytest.fixture(scope="module")
def setting(tiny_vgg):
    """(metadata, content, style, objective of an image): a model's training settings on a 64 px photo."""
    metadata = {"train_config": {"loss": dataclasses.asdict(LossConfig.johnson()), "style_size": STYLE_SIZE}}
    content = image_io.resize_long_side(load_test_image("chelsea.png"), 64)
    style = load_test_image("starry_night.png")
    return metadata, content, style, quality.objective_function(metadata, tiny_vgg, style, content)


def _baseline(vgg, setting, checkpoints):
    metadata, content, style, objective = setting
    return quality.lbfgs_baseline(vgg, quality._loss_config(metadata), style, STYLE_SIZE, content, checkpoints,
                                  "noise", 0, objective)


def test_each_checkpoint_scores_the_image_delivered_after_that_many_iterations(tiny_vgg, setting):
    scores = _baseline(tiny_vgg, setting, [4, 8])
    for iterations in (4, 8):
        delivered = _baseline(tiny_vgg, setting, [iterations])
        assert scores[f"noise_lbfgs_{iterations}"] == pytest.approx(delivered[f"noise_lbfgs_{iterations}"], rel=1e-4)
        # The run stopped at `iterations` returns its iterate clipped to [0, 255]: the delivered image.
        assert scores[f"noise_lbfgs_{iterations}_image"] == pytest.approx(
            delivered[f"noise_lbfgs_{iterations}_image"], rel=1e-4)
    assert scores["noise_lbfgs_4_image"] != pytest.approx(scores["noise_lbfgs_8_image"], rel=1e-3)


def test_the_delivered_image_is_the_iterate_clipped_to_the_pixel_range(tiny_vgg, setting):
    """From white noise the iterate leaves [0, 255]; the delivered image's objective is that of the clipped one."""
    metadata, content, style, objective = setting
    seen = []
    scores = quality.lbfgs_baseline(tiny_vgg, quality._loss_config(metadata), style, STYLE_SIZE, content, [8],
                                    "noise", 0, lambda image: seen.append(image) or objective(image))
    delivered = seen[-1]
    assert delivered.min() >= 0.0 and delivered.max() <= 255.0
    assert np.isclose(delivered, 0.0).any() or np.isclose(delivered, 255.0).any()
    assert scores["noise_lbfgs_8_image"] == pytest.approx(objective(delivered), rel=1e-6)
    assert scores["noise_lbfgs_8_image"] != pytest.approx(scores["noise_lbfgs_8"], rel=1e-3)


def test_the_bounded_baseline_descends_from_white_noise_and_reports_each_checkpoint(tiny_vgg, setting):
    metadata, content, style, objective = setting
    scores = quality.bounded_lbfgs_baseline(quality.gatys_objective(metadata, tiny_vgg, style, content), content,
                                            [3, 6], seed=0)
    start_value = objective(white_noise(content.shape, 0))
    assert start_value > scores["noise_bounded_lbfgs_3"] > scores["noise_bounded_lbfgs_6"] > 0.0
    assert scores["noise_bounded_lbfgs_6_image"] == scores["noise_bounded_lbfgs_6"]
    assert scores["noise_bounded_lbfgs_iterations_run"] == 6


def test_the_projected_baseline_delivers_its_iterate(tiny_vgg, setting):
    """impasto's L-BFGS held to [0, 255] (what `impasto stylize` runs): the image is the iterate, in range."""
    metadata, content, style, objective = setting
    seen = []
    scores = quality.lbfgs_baseline(tiny_vgg, quality._loss_config(metadata), style, STYLE_SIZE, content, [8],
                                    "noise_projected", 0, lambda image: seen.append(image) or objective(image))
    assert scores["noise_projected_lbfgs_8_image"] == pytest.approx(scores["noise_projected_lbfgs_8"], rel=1e-5)
    assert objective(white_noise(content.shape, 0)) > scores["noise_projected_lbfgs_8"]
    assert seen[-1].min() >= 0.0 and seen[-1].max() <= 255.0


def _subtotals(terms):
    return terms["content"] + terms["style"] + terms["tv"]


def test_each_checkpoint_records_the_terms_of_its_iterate(tiny_vgg, setting):
    metadata, *_ = setting
    scores = _baseline(tiny_vgg, setting, [4, 8])
    layers = [f"style/{layer}" for layer, _ in quality._loss_config(metadata).style_layers]
    for iterations in (4, 8):
        terms = scores[f"noise_lbfgs_{iterations}_terms"]
        assert _subtotals(terms) == pytest.approx(scores[f"noise_lbfgs_{iterations}"], rel=1e-4)
        assert sum(terms[layer] for layer in layers) == pytest.approx(terms["style"], rel=1e-4)
    assert scores["noise_lbfgs_4_terms"]["style"] != pytest.approx(scores["noise_lbfgs_8_terms"]["style"], rel=1e-3)


def test_the_feed_forward_output_is_compared_with_the_baseline_term_by_term(tiny_vgg, setting):
    metadata, content, style, _ = setting
    metadata = {**metadata, "style": "starry_night"}
    scores = quality.score_photo(TransformerNet(width=0.125, seed=0), metadata, tiny_vgg, style, content,
                                 max(content.shape[:2]), {"noise": [4]}, [0], cache={})
    terms, baseline = scores["feed_forward_terms"], scores["noise_lbfgs_4_terms"]
    assert list(terms) == list(quality._loss_config(metadata).term_names)
    assert _subtotals(terms) == pytest.approx(scores["feed_forward"], rel=1e-4)
    ratios = scores["feed_forward_over_noise_4_terms"]
    assert ratios["style"] == pytest.approx(terms["style"] / baseline["style"], abs=1e-3)
    assert ratios["content"] == pytest.approx(terms["content"] / baseline["content"], abs=1e-3)


def test_an_unknown_baseline_is_named():
    with pytest.raises(SystemExit, match="unknown --starts noise_unbounded"):
        quality.main(["--starts", "noise,noise_unbounded", "--models", "starry_night"])


def test_several_seeds_give_each_noise_baseline_and_the_ratio_to_their_mean(tiny_vgg, setting):
    metadata, content, style, _ = setting
    metadata = {**metadata, "style": "starry_night"}
    network, cache = TransformerNet(width=0.125, seed=0), {}
    scores = quality.score_photo(network, metadata, tiny_vgg, style, content, max(content.shape[:2]),
                                 {"noise": [4], "content": [4]}, [0, 1], cache)
    first = quality.score_photo(network, metadata, tiny_vgg, style, content, max(content.shape[:2]),
                                {"noise": [4]}, [0], cache={})
    by_seed = scores["noise_lbfgs_4_seeds"]
    assert by_seed[0] == pytest.approx(first["noise_lbfgs_4"], rel=1e-4) == pytest.approx(scores["noise_lbfgs_4"])
    assert by_seed[0] != pytest.approx(by_seed[1], rel=1e-4)  # Another noise, another iterate.
    assert scores["noise_lbfgs_4_mean"] == pytest.approx(np.mean(by_seed))
    assert scores["feed_forward_over_noise_4_mean"] == pytest.approx(
        scores["feed_forward"] / np.mean(by_seed), abs=1e-3)
    assert "content_lbfgs_4_seeds" not in scores  # The content start draws no noise: one run.
    assert len(cache) == 3
