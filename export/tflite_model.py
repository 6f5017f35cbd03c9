"""``model.tflite`` in a SavedModel version: the network in its XNNPACK form, for CPU servers where it wins.

A SavedModel's signatures run TensorFlow's kernels (oneDNN on CPU). On CPUs where
LiteRT's XNNPACK kernels run the network faster (the engine calibration,
`impasto.model.feedforward.engines`, measures it per machine), TensorFlow Serving can
serve the same version from ``model.tflite`` instead: started with
``--prefer_tflite_model=true``, tensorflow_model_server loads that file from the version
directory when it is there (and the SavedModel otherwise) and serves the LiteRT
model's own signatures in place of the SavedModel's; ``impasto serve`` takes the same
flag and does the same.

The file holds one signature, `keys.STYLIZE_TENSOR`, with the SavedModel's keys
(`keys.IMAGES` in, `keys.STYLIZED_IMAGES` out, float32 [N, H, W, 3] RGB in [0, 255]), so a
client calling ``stylize_tensor`` gets the same answer from either form. LiteRT's builtin
ops cannot decode or encode images, so the encoded-image signatures are the SavedModel's
alone; and TF Serving replays the warmup records on whichever form it loaded, so an export
with this file warms ``stylize_tensor`` (`impasto.export.warmup`).
"""

import tempfile
from pathlib import Path

import tensorflow as tf

from impasto.export import keys
from impasto.model.feedforward.litert_network import litert_network
from impasto.model.feedforward.transformer import TransformerNet


def convert_stylize_tensor(network: TransformerNet) -> bytes:
    """The float32 LiteRT model of `network` (its XNNPACK form) with the one signature `keys.STYLIZE_TENSOR`.

    The converter names a signature after its SavedModel signature key, so the form is
    saved as a SavedModel under that key first and converted from there.
    """
    form = litert_network(network.weights_dict())
    spec = tf.TensorSpec([None, None, None, 3], tf.float32, name=keys.IMAGES)
    function = tf.function(lambda images: {keys.STYLIZED_IMAGES: form(images)}, input_signature=[spec])
    with tempfile.TemporaryDirectory(prefix="impasto-tflite-") as directory:
        tf.saved_model.save(form, directory, signatures={keys.STYLIZE_TENSOR: function.get_concrete_function()})
        converter = tf.lite.TFLiteConverter.from_saved_model(directory, signature_keys=[keys.STYLIZE_TENSOR])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        return converter.convert()


def write_tflite_model(network: TransformerNet, version_dir: str | Path) -> Path:
    """Writes ``model.tflite`` of `network` into a version directory under construction; returns its path."""
    path = Path(version_dir) / keys.TFLITE_MODEL_FILE
    path.write_bytes(convert_stylize_tensor(network))
    return path
