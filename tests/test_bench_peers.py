"""bench/speed.py's peers run the network impasto runs: the ONNX graph it writes equals the plain network."""

import sys

import numpy as np
import pytest

from impasto.model.feedforward.reference_transformer import ReferenceTransformer
from impasto.model.feedforward.transformer import TransformerNet

from conftest import REPO_ROOT, load_test_image

sys.path.insert(0, str(REPO_ROOT / "bench"))
import plain_onnx  # noqa: E402  (bench/plain_onnx.py)


@pytest.mark.parametrize("height, width, blocks", [(64, 96, 5), (32, 48, 7)])
def test_plain_onnx_graph_in_onnxruntime_equals_the_reference_network(height, width, blocks):
    pytest.importorskip("onnxruntime", reason="requirements-dev.txt installs it; `make test` always has it")
    network = TransformerNet(width=0.25, residual_blocks=blocks, seed=5)
    rng = np.random.default_rng(5)  # Every variable random, norm scales and offsets too.
    network.load_weights_dict({path: value + rng.normal(0.0, 0.3, value.shape)
                               for path, value in network.weights_dict().items()})
    photo = load_test_image("chelsea.png")[None, :height, :width]
    assert photo.shape[1:3] == (height, width)
    expected = ReferenceTransformer(network.weights_dict())(photo).numpy()
    run, versions = plain_onnx.onnxruntime_runner(network.weights_dict(), threads=1)
    output = run(photo)
    assert "onnxruntime" in versions and output.shape == photo.shape
    assert expected.std() > 1.0
    assert np.abs(output - expected).max() < 0.05, np.abs(output - expected).max()
