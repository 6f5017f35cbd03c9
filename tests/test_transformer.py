"""The feed-forward network: any size and batch, range contract, no transposed convolutions."""

import json
import re

import numpy as np
import pytest
import tensorflow as tf

from impasto.model.errors import InvalidInputError
from impasto.model.feedforward.bundles import BUNDLE_FORMAT, load_network, write_bundle
from impasto.model.feedforward.stylizer import FastStylizer
from impasto.model.feedforward.transformer import TransformerNet


@pytest.fixture(scope="module")
def network():
    return TransformerNet(width=0.125)


@pytest.mark.parametrize("shape", [(1, 1, 1, 3), (2, 37, 53, 3), (3, 64, 64, 3), (1, 15, 130, 3)])
def test_any_size_and_batch_keeps_the_shape_and_range(network, shape):
    images = np.random.default_rng(0).uniform(0, 255, shape).astype(np.float32)
    output = network(images).numpy()
    assert output.shape == shape and output.dtype == np.float32
    assert output.min() >= 0.0 and output.max() <= 255.0


def test_batch_elements_are_independent(network):
    rng = np.random.default_rng(1)
    batch = rng.uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    together = network(batch).numpy()
    alone = network(batch[1:]).numpy()
    np.testing.assert_allclose(together[1:], alone, atol=1e-2)  # Kernels differ by batch size.


def test_width_multiplier_scales_the_parameters():
    def count(width):
        return sum(int(np.prod(v.shape)) for v in TransformerNet(width=width).trainable_variables)

    assert count(1.0) > 3.5 * count(0.5)
    assert 1_500_000 < count(1.0) < 1_800_000  # Johnson et al.'s network has about 1.68 M parameters.


def test_upsampling_uses_resize_then_convolve(network):
    graph = tf.function(network.__call__).get_concrete_function(tf.TensorSpec([1, 32, 32, 3])).graph
    op_types = {op.type for op in graph.get_operations()}
    assert "Conv2DBackpropInput" not in op_types and "MirrorPad" in op_types


def test_bundle_round_trip_stores_float16_and_restores_the_network(tmp_path, network):
    path = tmp_path / "style.npz"
    write_bundle(network, {"width": 0.125, "style": "test"}, path)
    with np.load(path) as archive:
        assert all(archive[name].dtype == np.float16 for name in archive.files)
    restored, metadata = load_network(path)
    image = np.random.default_rng(2).uniform(0, 255, (1, 24, 24, 3)).astype(np.float32)
    assert metadata["style"] == "test"
    assert np.abs(restored(image).numpy() - network(image).numpy()).max() < 1.0


@pytest.mark.parametrize("field, value, message", [
    ("format", "impasto-transformer/2", "model format 'impasto-transformer/2'; this impasto reads"),
    ("format", None, "model format None"),
    ("width", "wide", 'no numeric "width" field'),
])
def test_a_bundle_of_another_format_is_refused_by_name(tmp_path, network, field, value, message):
    path = tmp_path / "style.npz"
    write_bundle(network, {"width": 0.125, "style": "test"}, path)
    metadata = json.loads(path.with_suffix(".json").read_text())
    assert metadata["format"] == BUNDLE_FORMAT
    if value is None:
        del metadata[field]
    else:
        metadata[field] = value
    path.with_suffix(".json").write_text(json.dumps(metadata))
    with pytest.raises(InvalidInputError, match=re.escape(message)):
        load_network(path)


def test_fast_stylizer_controls(network):
    image = np.random.default_rng(3).uniform(0, 255, (20, 30, 3)).astype(np.float32)
    stylizer = FastStylizer(network)
    np.testing.assert_allclose(stylizer.stylize(image, strength=0.0), image, atol=1e-3)
    full = stylizer.stylize(image)
    half = stylizer.stylize(image, strength=0.5)
    np.testing.assert_allclose(half, 0.5 * full + 0.5 * image, atol=1e-2)
    assert stylizer.stylize(image, preserve_color=True).shape == image.shape
