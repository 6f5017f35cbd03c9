"""A TF1 SavedModel run in a TensorFlow session, as tensorflow_model_server runs it (LoadSavedModel).

A TF1 graph export (tf.compat.v1.saved_model.Builder) is imported into a
`tf.compat.v1.Session` from its "serve" MetaGraph, and each signature runs as
one session call that feeds and fetches the tensors its SignatureDef names.
The session gets the request's tensors as they are: a signature input declared
[-1, 1] may be fed [1], [3], [] or [2, 2], and the graph decides
(half_plus_two answers y = [3.0] for x = [2.0]); what the graph refuses comes
back with TensorFlow's status code.
"""

import threading
from pathlib import Path

import grpc
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2, meta_graph_pb2

from impasto.serving.errors import ModelError, SignatureNotFoundError, grpc_code
from impasto.serving.tensors import Arrays, Specs

SERVE_TAG = "serve"


class SessionModel:
    """One version's MetaGraph, variables and session.

    Args:
        path: the version directory (saved_model.pb or .pbtxt, variables/, assets/).

    Raises:
        RuntimeError or tf.errors.OpError: no "serve" MetaGraph, or the graph or its variables do not load.
    """

    def __init__(self, path: str | Path):
        self._graph = tf.Graph()
        self._session = tf.compat.v1.Session(graph=self._graph)
        with self._graph.as_default():
            meta_graph = tf.compat.v1.saved_model.loader.load(self._session, [SERVE_TAG], str(path))
        self.signature_defs: dict[str, meta_graph_pb2.SignatureDef] = dict(meta_graph.signature_def)
        self._callables = {}
        self._lock = threading.Lock()  # Guards `_callables`; session calls themselves run concurrently.

    def signature_def(self, signature: str) -> meta_graph_pb2.SignatureDef:
        """The named SignatureDef.

        Raises:
            SignatureNotFoundError: the MetaGraph has no such signature.
        """
        try:
            return self.signature_defs[signature]
        except KeyError:
            raise SignatureNotFoundError(signature) from None

    def input_specs(self, signature: str) -> Specs:
        """The signature's inputs as TensorSpecs (dtype and declared shape; unknown rank as None)."""
        return {key: _spec(info) for key, info in self.signature_def(signature).inputs.items()}

    def output_keys(self, signature: str) -> list[str]:
        """The signature's output aliases, sorted."""
        return sorted(self.signature_def(signature).outputs)

    def run(self, signature: str, inputs: Arrays, outputs: list[str]) -> Arrays:
        """Feeds `inputs` to the tensors the signature names and fetches `outputs`.

        Args:
            signature: the signature name.
            inputs: arrays by input alias, already checked for keys and dtypes.
            outputs: the output aliases to fetch.

        Raises:
            ModelError: the session failed, with TensorFlow's status code (INVALID_ARGUMENT for a
                shape the graph cannot take).
        """
        feeds = sorted(inputs)
        call = self._callable(signature, tuple(feeds), tuple(outputs))
        try:
            values = call(*(inputs[key] for key in feeds))
        except tf.errors.OpError as error:
            raise ModelError(grpc_code(error.error_code), error.message) from None
        return dict(zip(outputs, values))

    def close(self) -> None:
        """Frees the session's resources."""
        self._session.close()

    def _callable(self, signature: str, feeds: tuple[str, ...], fetches: tuple[str, ...]):
        """A session callable for these feeds and fetches, made once (Session::MakeCallable).

        A callable takes the arrays as they are: unlike `Session.run`, it does not hold a fed
        value to the tensor's static shape, just as TF Serving's session does not.
        """
        key = (signature, feeds, fetches)
        with self._lock:
            if key not in self._callables:
                definition = self.signature_def(signature)
                options = config_pb2.CallableOptions(
                    feed=[_tensor_name(definition.inputs[alias], alias) for alias in feeds],
                    fetch=[_tensor_name(definition.outputs[alias], alias) for alias in fetches])
                self._callables[key] = self._session._make_callable_from_options(options)  # noqa: SLF001
            return self._callables[key]


def _spec(info: meta_graph_pb2.TensorInfo) -> tf.TensorSpec:
    shape = None if info.tensor_shape.unknown_rank else [dim.size if dim.size >= 0 else None
                                                         for dim in info.tensor_shape.dim]
    return tf.TensorSpec(shape, tf.as_dtype(info.dtype))


def _tensor_name(info: meta_graph_pb2.TensorInfo, alias: str) -> str:
    """The graph tensor a dense TensorInfo names.

    Raises:
        ModelError: a sparse or composite tensor, which Predict cannot feed or fetch (FAILED_PRECONDITION).
    """
    if info.WhichOneof("encoding") != "name":
        raise ModelError(grpc.StatusCode.FAILED_PRECONDITION, f"tensor '{alias}' of the signature is not a dense "
                                                               "tensor; Predict supports dense tensors only")
    return info.name
