"""One loaded version of a model: its SavedModel, signatures, warmup, batching and in-flight count.

impasto's own exports (those with assets.extra/impasto_export.json) and TF1 graph
SavedModels run in a TensorFlow session (`session_model`), as tensorflow_model_server
runs them, XLA-compiled functions included: a TF1 graph gets the request's tensors as
they are, and impasto's exports are first held to their signature contract (shapes,
batch size). Other TF2 SavedModels (Keras models, those built under a distribution
strategy) load with `tf.saved_model.load` and get the request's tensors as their
signature functions take them. With ``prefer_tflite_model``, a version holding a
``model.tflite`` is served from that file in LiteRT instead (`tflite_model`), as
tensorflow_model_server does with ``--prefer_tflite_model=true``.
"""

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import tensorflow as tf
from google.protobuf import text_format
from google.protobuf.message import DecodeError
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import get_model_metadata_pb2

from impasto.export import keys
from impasto.export.tfserving_config import BatchingConfig
from impasto.export.warmup import read_warmup_requests, warmup_path
from impasto.model.cpu import usable_cpus
from impasto.model.errors import InvalidInputError
from impasto.serving import tensors
from impasto.serving.batching import Batcher
from impasto.serving.errors import CancelledError, DeadlineExceededError, ModelError, SignatureNotFoundError, grpc_code
from impasto.serving.session_model import SERVE_TAG, SessionModel
from impasto.serving.tensors import Arrays
from impasto.serving.tflite_model import TfLiteModel, tflite_model_path


class Servable:
    """A loaded model version.

    Loading (construction) reads the SavedModel and replays its warmup requests;
    any failure there raises, so a corrupt version never serves. `load_seconds` and
    `warmup_seconds` say how long each step took, `warmup_count` how many requests.

    Args:
        name: the model's name.
        version: the version number (the directory's name).
        path: the version directory.
        batching: batch concurrent requests with these options; None to run each request alone.
        max_batch_size: refuse requests with more examples than this (None: no limit).
        on_batch: called with the size of every batch the batcher runs (for metrics).
        prefer_tflite_model: serve the version's ``model.tflite``, if it has one, in place of its SavedModel.

    Attributes:
        form: ``"model.tflite"`` when the version runs from that file, else ``"SavedModel"``.
    """

    def __init__(self, name: str, version: int, path: str | os.PathLike, batching: BatchingConfig | None = None,
                 max_batch_size: int | None = None, on_batch: Callable[[int], None] | None = None,
                 prefer_tflite_model: bool = False):
        self.name, self.version, self.path = name, version, Path(path)
        self._max_batch_size = max_batch_size
        self._cond = threading.Condition()
        self._in_flight = 0
        started = time.monotonic()
        self.is_impasto_export = (self.path / keys.ASSETS_EXTRA / keys.METADATA_FILE).is_file()
        tflite = tflite_model_path(self.path) if prefer_tflite_model else None
        if tflite is not None:
            self.form = keys.TFLITE_MODEL_FILE
            self._model = TfLiteModel(tflite, threads=usable_cpus())
            signature_defs = self._model.signature_defs
        else:
            self.form = "SavedModel"
            saved_model = _read_saved_model(self.path)
            # impasto's exports and TF1 graphs load as tensorflow_model_server loads them; a session holds about
            # half the memory `tf.saved_model.load` does for an impasto export (docs/serving.md).
            in_session = self.is_impasto_export or not _is_tf2(saved_model)
            self._model = SessionModel(self.path) if in_session else FunctionModel(self.path)
            signature_defs = _serving_signature_defs(saved_model)
        self.signature_def_map = get_model_metadata_pb2.SignatureDefMap(signature_def=signature_defs)
        self._batcher = None  # Warmup runs each request alone.
        loaded = time.monotonic()
        self.load_seconds = loaded - started
        self.warmup_count = self._replay_warmup()
        self.warmup_seconds = time.monotonic() - loaded
        self._batcher = Batcher(self._run, batching, on_batch) if batching else None

    def input_specs(self, signature: str) -> tensors.Specs:
        """The named signature's inputs.

        Raises:
            SignatureNotFoundError: no such signature.
        """
        return self._model.input_specs(signature)

    def predict(self, signature: str, inputs: Arrays, output_filter=(), deadline: float | None = None,
                cancelled: threading.Event | None = None) -> Arrays:
        """Checks and runs one request.

        Args:
            signature: the signature name ("" means serving_default).
            inputs: decoded input arrays by key.
            output_filter: output keys to return; empty for all.
            deadline: `time.monotonic()` after which the request is not started.
            cancelled: set when the client goes away; the request is then not started.

        Returns:
            Output arrays by key.

        Raises:
            SignatureNotFoundError: unknown signature.
            InvalidInputError: inputs that do not fit the signature, or that the model refuses.
            ModelError: another TensorFlow error while the model ran, with its status code.
            DeadlineExceededError, ResourceExhaustedError, CancelledError: from the batching queue.
        """
        signature = signature or keys.SERVING_DEFAULT
        names = tensors.check_output_filter(self._model.output_keys(signature), output_filter)
        specs = self._model.input_specs(signature)
        if self.is_impasto_export:
            size = tensors.check_inputs(specs, inputs, self._max_batch_size)
        else:
            tensors.check_keys(specs, inputs)
            size = tensors.batch_size(inputs) if self._batcher is not None else None
        if self._batcher is not None:
            outputs = self._batcher.submit(signature, inputs, size, deadline, cancelled)
        else:
            if deadline is not None and time.monotonic() > deadline:
                raise DeadlineExceededError("Deadline exceeded before the request could run")
            if cancelled is not None and cancelled.is_set():
                raise CancelledError("the client cancelled the request before it ran")
            outputs = self._run(signature, inputs, names)
        return {name: outputs[name] for name in names}

    def acquire(self) -> None:
        """Counts one request in flight (the registry calls this under its lock)."""
        with self._cond:
            self._in_flight += 1

    def release(self) -> None:
        """Counts one request finished."""
        with self._cond:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._cond.notify_all()

    def unload(self) -> None:
        """Waits for the requests in flight to finish, then frees the model."""
        with self._cond:
            self._cond.wait_for(lambda: self._in_flight == 0)
        if self._batcher is not None:
            self._batcher.close()
        self._model.close()

    def _run(self, signature: str, inputs: Arrays, outputs: list[str] | None = None) -> Arrays:
        """Runs the signature on `inputs`, fetching `outputs` (None: all, as the batcher asks).

        A TensorFlow INVALID_ARGUMENT error becomes bad input; the model's other errors keep their code.
        """
        outputs = self._model.output_keys(signature) if outputs is None else outputs
        try:
            return self._model.run(signature, inputs, outputs)
        except ModelError as error:
            if error.code == grpc.StatusCode.INVALID_ARGUMENT:
                raise InvalidInputError(_tf_error_text(str(error))) from None
            raise

    def _replay_warmup(self) -> int:
        """Runs each PredictionLog request of assets.extra/tf_serving_warmup_requests once.

        Returns:
            The number of requests replayed.

        Raises:
            RuntimeError: a record is not a PredictLog, or a request fails.
        """
        path = warmup_path(self.path)
        if not path.exists():
            return 0
        try:
            requests = read_warmup_requests(path)
        except ValueError as error:
            raise RuntimeError(str(error)) from None
        for count, request in enumerate(requests):
            inputs = {key: tensors.from_tensor_proto(key, proto) for key, proto in request.inputs.items()}
            try:
                self.predict(request.model_spec.signature_name, inputs)
            except Exception as error:
                raise RuntimeError(f"warmup request {count} from {path} failed: {error}") from None
        return len(requests)


def _read_saved_model(path: Path) -> saved_model_pb2.SavedModel:
    """The version's saved_model.pb (or saved_model.pbtxt).

    Raises:
        RuntimeError: neither file parses as a SavedModel.
    """
    binary = path / "saved_model.pb"
    try:
        if binary.exists():
            return saved_model_pb2.SavedModel.FromString(binary.read_bytes())
        return text_format.Parse((path / "saved_model.pbtxt").read_text(), saved_model_pb2.SavedModel())
    except (OSError, DecodeError, text_format.ParseError) as error:
        raise RuntimeError(f"cannot parse the SavedModel in {path} (saved_model.pb or .pbtxt): {error}") from None


def _is_tf2(saved_model: saved_model_pb2.SavedModel) -> bool:
    """Whether tf.saved_model.save wrote it (its MetaGraph holds an object graph); TF1's builder writes none."""
    return any(len(graph.object_graph_def.nodes) for graph in saved_model.meta_graphs)


def _serving_signature_defs(saved_model: saved_model_pb2.SavedModel) -> dict:
    """The SignatureDefs of the serving MetaGraph by name, as GetModelMetadata reports them."""
    serving = [graph for graph in saved_model.meta_graphs if SERVE_TAG in graph.meta_info_def.tags]
    return dict((serving or saved_model.meta_graphs)[0].signature_def)


def _tf_error_text(message: str) -> str:
    """The useful line(s) of a TensorFlow op error message, without graph execution boilerplate."""
    skip = ("Graph execution error", "Detected at node", "<stack traces", "[[", "File ", "Error in user-defined")
    lines = [line.strip() for line in message.splitlines()]
    kept = [line for line in lines if line and not line.startswith(skip)]
    return "; ".join(kept) or message


class FunctionModel:
    """A TF2 SavedModel loaded with `tf.saved_model.load`: each signature a concrete function.

    Args:
        path: the version directory.
    """

    def __init__(self, path: Path):
        self._model = tf.saved_model.load(str(path))
        self._functions = dict(self._model.signatures)
        self._inputs = {name: function.structured_input_signature[1] for name, function in self._functions.items()}

    def input_specs(self, signature: str) -> tensors.Specs:
        """The signature's inputs.

        Raises:
            SignatureNotFoundError: no such signature.
        """
        return self._inputs[self._known(signature)]

    def output_keys(self, signature: str) -> list[str]:
        """The signature's output keys, sorted."""
        return sorted(self._functions[self._known(signature)].structured_outputs)

    def run(self, signature: str, inputs: Arrays, outputs: list[str]) -> Arrays:
        """Calls the signature's function.

        Raises:
            ModelError: TensorFlow refused the inputs (INVALID_ARGUMENT) or failed, with its status code.
        """
        specs = self._inputs[signature]
        feeds = {name: tf.constant(array, dtype=specs[name].dtype) for name, array in inputs.items()}
        try:
            results = self._functions[signature](**feeds)
        except tf.errors.OpError as error:
            raise ModelError(grpc_code(error.error_code), error.message) from None
        except (TypeError, ValueError) as error:  # Inputs the function's own call refuses.
            raise ModelError(grpc.StatusCode.INVALID_ARGUMENT, str(error)) from None
        return {name: results[name].numpy() for name in outputs}

    def close(self) -> None:
        """Drops the functions and the loaded object (freed once no request holds them)."""
        self._functions, self._model = {}, None

    def _known(self, signature: str) -> str:
        if signature not in self._functions:
            raise SignatureNotFoundError(signature)
        return signature

