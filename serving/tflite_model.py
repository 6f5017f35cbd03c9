"""A version served from its ``model.tflite`` in LiteRT, as tensorflow_model_server does with --prefer_tflite_model.

With that flag TF Serving loads ``model.tflite`` from the version directory, when there is one,
in place of the SavedModel, and serves the LiteRT model's own signatures: each becomes a
SignatureDef whose inputs and outputs are its tensors, by their signature keys. impasto's
exports hold such a file when exported with ``--tflite-model`` (`impasto.export.tflite_model`):
the network's XNNPACK form with the one signature ``stylize_tensor``.

One interpreter runs the requests, one at a time; XNNPACK spreads each over the usable CPUs.
Each signature's inputs are resized to every request's shape.
"""

import threading
from pathlib import Path

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_shape_pb2
from tensorflow.core.protobuf import meta_graph_pb2

from impasto.export import keys
from impasto.serving.errors import ModelError, SignatureNotFoundError
from impasto.serving.tensors import Arrays, Specs


def tflite_model_path(version_dir: str | Path) -> Path | None:
    """The version's ``model.tflite``, if it has one."""
    path = Path(version_dir) / keys.TFLITE_MODEL_FILE
    return path if path.is_file() else None


class TfLiteModel:
    """One version's LiteRT model and its signatures.

    Args:
        path: the ``model.tflite`` file.
        threads: CPU threads for XNNPACK.

    Raises:
        RuntimeError: the file is not a LiteRT model, or it has no signatures.
    """

    def __init__(self, path: Path, threads: int):
        from ai_edge_litert.interpreter import Interpreter

        try:
            self._interpreter = Interpreter(model_path=str(path), num_threads=threads)
        except ValueError as error:
            raise RuntimeError(f"{path}: not a LiteRT model: {error}") from None
        self._runners = {name: self._interpreter.get_signature_runner(name)
                         for name in self._interpreter.get_signature_list()}
        if not self._runners:
            raise RuntimeError(f"{path}: the LiteRT model has no signatures to serve")
        self.signature_defs = {name: _signature_def(runner) for name, runner in self._runners.items()}
        self._input_specs = {name: {key: tf.TensorSpec([dim.size if dim.size >= 0 else None
                                                        for dim in info.tensor_shape.dim], tf.as_dtype(info.dtype))
                                    for key, info in definition.inputs.items()}
                             for name, definition in self.signature_defs.items()}
        self._lock = threading.Lock()  # An interpreter runs one request at a time.

    def input_specs(self, signature: str) -> Specs:
        """The signature's inputs as TensorSpecs (-1 in the model's shape: any size).

        Raises:
            SignatureNotFoundError: no such signature.
        """
        self._signature_def(signature)
        return self._input_specs[signature]

    def output_keys(self, signature: str) -> list[str]:
        """The signature's output keys, sorted."""
        return sorted(self._signature_def(signature).outputs)

    def run(self, signature: str, inputs: Arrays, outputs: list[str]) -> Arrays:
        """Runs the signature on `inputs` (resized to their shapes) and returns `outputs`.

        Raises:
            ModelError: INVALID_ARGUMENT for an input with no elements or one the model cannot take.
        """
        specs = self.input_specs(signature)
        feeds = {key: np.ascontiguousarray(value, dtype=specs[key].dtype.as_numpy_dtype)
                 for key, value in inputs.items()}
        empty = sorted(key for key, value in feeds.items() if value.size == 0)
        if empty:
            raise ModelError(grpc.StatusCode.INVALID_ARGUMENT,
                             f"input '{empty[0]}' has shape {list(feeds[empty[0]].shape)}: no elements to run on")
        try:
            with self._lock:
                results = self._runners[signature](**feeds)
        except (ValueError, RuntimeError) as error:
            message = f"the LiteRT model refused the inputs: {error}"
            raise ModelError(grpc.StatusCode.INVALID_ARGUMENT, message) from None
        return {key: results[key] for key in outputs}

    def close(self) -> None:
        """Drops the interpreter (freed once no request holds it)."""
        self._runners, self._interpreter = {}, None

    def _signature_def(self, signature: str) -> meta_graph_pb2.SignatureDef:
        try:
            return self.signature_defs[signature]
        except KeyError:
            raise SignatureNotFoundError(signature) from None


def _signature_def(runner) -> meta_graph_pb2.SignatureDef:
    """A LiteRT signature as the SignatureDef TF Serving reports for it: its tensors by their keys."""
    definition = meta_graph_pb2.SignatureDef(method_name=keys.PREDICT_METHOD_NAME)
    for table, details in ((definition.inputs, runner.get_input_details()),
                           (definition.outputs, runner.get_output_details())):
        for key, detail in details.items():
            shape = tensor_shape_pb2.TensorShapeProto(
                dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=int(size)) for size in detail["shape_signature"]])
            table[key].CopyFrom(meta_graph_pb2.TensorInfo(
                name=detail["name"], dtype=tf.as_dtype(detail["dtype"]).as_datatype_enum, tensor_shape=shape))
    return definition
