"""Signature and tensor key names of impasto's SavedModels: the contract between export, server and clients.

Imported by `impasto.export`, `impasto.serving` and every client; never spell
these strings anywhere else. `SIGNATURES` is the one table of the four signatures
(keys, dtypes, shapes, meaning): the exporter builds its input signatures from it,
the client checks a server's metadata against it, and docs/serving.md shows it
(`signature_table_markdown`; a test holds the two equal).
"""

from dataclasses import dataclass

PREDICT_METHOD_NAME = "tensorflow/serving/predict"

# Signatures and tensor keys; `SIGNATURES` below says what each is.
SERVING_DEFAULT = "serving_default"
SERVING_NOXLA = "serving_noxla"
STYLIZE_TENSOR = "stylize_tensor"
STYLIZE_CONTROLS = "stylize_controls"

IMAGE_BYTES = "image_bytes"
IMAGES = "images"
STRENGTH = "strength"
PRESERVE_COLOR = "preserve_color"

STYLIZED_IMAGE_BYTES = "stylized_image_bytes"  # A _bytes suffix makes TF Serving's REST API use base64.
STYLIZED_IMAGES = "stylized_images"

WARMUP_FILE = "tf_serving_warmup_requests"
"""Name of the warmup record file under assets.extra/, as TF Serving expects."""

ASSETS_EXTRA = "assets.extra"
"""Folder of a version directory that TF Serving leaves alone (warmup records, impasto's metadata)."""
METADATA_FILE = "impasto_export.json"
"""JSON under assets.extra/: style, source, XLA, max side, max pixels and the size buckets of the export."""
TFLITE_MODEL_FILE = "model.tflite"
"""The LiteRT form of a version (``impasto export --tflite-model``), at the version directory's top, where
tensorflow_model_server started with ``--prefer_tflite_model=true`` looks for it; it holds `STYLIZE_TENSOR` only."""



@dataclass(frozen=True)
class TensorInfo:
    """One input or output of a signature.

    Attributes:
        key: the tensor key (the TensorSpec name of an input).
        dtype: the TensorFlow dtype's name ("string", "float32", "bool").
        shape: the shape: a number for a fixed size, a letter (N, H, W) for one the caller chooses.
        meaning: what the values are, for people.
    """

    key: str
    dtype: str
    shape: tuple[int | str, ...]
    meaning: str

    @property
    def static_shape(self) -> list[int | None]:
        """The shape as TensorFlow declares it: None for every size the caller chooses."""
        return [size if isinstance(size, int) else None for size in self.shape]


@dataclass(frozen=True)
class SignatureInfo:
    """One signature: its inputs and outputs, in call order, and what it is for."""

    name: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    meaning: str


_IMAGE_BYTES_IN = TensorInfo(IMAGE_BYTES, "string", ("N",),
                             "encoded JPEG, PNG, GIF (first frame) or BMP images, each of any size")
_IMAGES_IN = TensorInfo(IMAGES, "float32", ("N", "H", "W", 3), "RGB in [0, 255]")
_BYTES_OUT = TensorInfo(STYLIZED_IMAGE_BYTES, "string", ("N",), "PNG images, each at its input's size")
_IMAGES_OUT = TensorInfo(STYLIZED_IMAGES, "float32", ("N", "H", "W", 3), "RGB in [0, 255]")

SIGNATURES = {signature.name: signature for signature in (
    SignatureInfo(SERVING_DEFAULT, (_IMAGE_BYTES_IN,), (_BYTES_OUT,),
                  "encoded images in, PNG out; the network XLA-compiled in a GPU-target export only"),
    SignatureInfo(SERVING_NOXLA, (_IMAGE_BYTES_IN,), (_BYTES_OUT,),
                  f"as {SERVING_DEFAULT}, never XLA-compiled (a GPU-target export on a server without XLA flags)"),
    SignatureInfo(STYLIZE_TENSOR, (_IMAGES_IN,), (_IMAGES_OUT,), "pixels in and out, for same-size batches"),
    SignatureInfo(STYLIZE_CONTROLS, (
        _IMAGE_BYTES_IN,
        TensorInfo(STRENGTH, "float32", ("N",), "0..1, blend from the content (0) to the full style (1)"),
        TensorInfo(PRESERVE_COLOR, "bool", ("N",), "keep the content's colours, stylize the luminance only"),
    ), (_BYTES_OUT,), f"{SERVING_DEFAULT} with a per-image style strength and colour preservation"),
)}
"""Signature name -> `SignatureInfo`: every signature of an impasto export, all with `PREDICT_METHOD_NAME`."""


def signature_table_markdown() -> str:
    """`SIGNATURES` as the Markdown table docs/serving.md shows (one row per signature)."""
    def tensors(infos: tuple[TensorInfo, ...]) -> str:
        return "; ".join(f"`{info.key}`: {info.dtype} [{', '.join(map(str, info.shape))}], {info.meaning}"
                         for info in infos)

    rows = ["| signature | inputs | outputs | meaning |", "| --- | --- | --- | --- |"]
    for signature in SIGNATURES.values():
        rows.append(f"| `{signature.name}` | {tensors(signature.inputs)} | {tensors(signature.outputs)} "
                    f"| {signature.meaning} |")
    return "\n".join(rows)
