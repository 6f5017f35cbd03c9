"""Signature and tensor key names of impasto's SavedModels: the contract between export, server and clients.

Imported by `impasto.export`, `impasto.serving` and every client; never spell
these strings anywhere else.
"""

PREDICT_METHOD_NAME = "tensorflow/serving/predict"

# Signatures.
SERVING_DEFAULT = "serving_default"
"""Encoded images in, PNG bytes out; the network XLA-compiled in a GPU-target export only."""
SERVING_NOXLA = "serving_noxla"
"""Same as SERVING_DEFAULT, never XLA-compiled (a GPU-target export on a server without XLA flags)."""
STYLIZE_TENSOR = "stylize_tensor"
"""float32 [N, H, W, 3] in [0, 255] in and out, for same-size batches."""
STYLIZE_CONTROLS = "stylize_controls"
"""SERVING_DEFAULT plus STRENGTH and PRESERVE_COLOR inputs."""

# Inputs.
IMAGE_BYTES = "image_bytes"
"""tf.string [N]: encoded JPEG, PNG, GIF (first frame) or BMP images, each of any size."""
IMAGES = "images"
"""float32 [N, H, W, 3], RGB in [0, 255]."""
STRENGTH = "strength"
"""float32 [N]: 0..1, blend from the content (0) to the full style (1)."""
PRESERVE_COLOR = "preserve_color"
"""bool [N]: keep the content's colours, stylize the luminance only."""

# Outputs.
STYLIZED_IMAGE_BYTES = "stylized_image_bytes"
"""tf.string [N]: PNG images, each at its input's size (the _bytes suffix makes TF Serving's REST API use base64)."""
STYLIZED_IMAGES = "stylized_images"
"""float32 [N, H, W, 3], RGB in [0, 255]."""

WARMUP_FILE = "tf_serving_warmup_requests"
"""Name of the warmup record file under assets.extra/, as TF Serving expects."""

ASSETS_EXTRA = "assets.extra"
"""Folder of a version directory that TF Serving leaves alone (warmup records, impasto's metadata)."""
METADATA_FILE = "impasto_export.json"
"""JSON under assets.extra/: style, source, XLA, max side, max pixels and the size buckets of the export."""

