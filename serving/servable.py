"""One loaded version of a model: its SavedModel, signatures, warmup, batching and in-flight count."""

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, prediction_log_pb2

from impasto.export import keys
from impasto.model.errors import InvalidInputError
from impasto.serving import tensors
from impasto.serving.batching import Batcher
from impasto.serving.config import BatchingOptions
from impasto.serving.errors import CancelledError, DeadlineExceededError, NotFoundError
from impasto.serving.tensors import Arrays

MAX_WARMUP_RECORDS = 1000
"""TF Serving's limit on warmup records per version."""


class Servable:
    """A loaded model version.

    Loading (construction) reads the SavedModel and replays its warmup requests;
    any failure there raises, so a corrupt version never serves.

    Args:
        name: the model's name.
        version: the version number (the directory's name).
        path: the version directory.
        batching: batch concurrent requests with these options; None to run each request alone.
        max_batch_size: refuse requests with more examples than this (None: no limit).
        on_batch: called with the size of every batch the batcher runs (for metrics).
    """

    def __init__(self, name: str, version: int, path: str | os.PathLike, batching: BatchingOptions | None = None,
                 max_batch_size: int | None = None, on_batch: Callable[[int], None] | None = None):
        self.name, self.version, self.path = name, version, Path(path)
        self._max_batch_size = max_batch_size
        self._cond = threading.Condition()
        self._in_flight = 0
        self._model = tf.saved_model.load(str(self.path))
        self._functions = dict(self._model.signatures)
        self.signature_def_map = _read_signature_defs(self.path)
        self._inputs = {name: function.structured_input_signature[1] for name, function in self._functions.items()}
        self._outputs = {name: function.structured_outputs for name, function in self._functions.items()}
        self._batcher = None  # Warmup runs each request alone.
        self.warmup_count = self._replay_warmup()
        self._batcher = Batcher(self._run, batching, on_batch) if batching else None

    def input_specs(self, signature: str) -> tensors.Specs:
        """The named signature's inputs.

        Raises:
            NotFoundError: no such signature.
        """
        self._function(signature)
        return self._inputs[signature]

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
            NotFoundError: unknown signature.
            InvalidInputError: inputs that do not fit the signature, or that the model refuses.
            DeadlineExceededError, ResourceExhaustedError, CancelledError: from the batching queue.
        """
        signature = signature or keys.SERVING_DEFAULT
        self._function(signature)
        names = tensors.check_output_filter(self._outputs[signature], output_filter)
        size = tensors.check_inputs(self._inputs[signature], inputs, self._max_batch_size)
        if self._batcher is not None:
            outputs = self._batcher.submit(signature, inputs, size, deadline, cancelled)
        else:
            if deadline is not None and time.monotonic() > deadline:
                raise DeadlineExceededError("Deadline exceeded before the request could run")
            if cancelled is not None and cancelled.is_set():
                raise CancelledError("the client cancelled the request before it ran")
            outputs = self._run(signature, inputs)
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
        self._functions, self._model = {}, None

    def _function(self, signature: str):
        try:
            return self._functions[signature]
        except KeyError:
            raise NotFoundError(f'Serving signature name: "{signature}" not found in signature def') from None

    def _run(self, signature: str, inputs: Arrays) -> Arrays:
        """Calls the signature's concrete function; the model's InvalidArgument errors become bad input."""
        specs = self._inputs[signature]
        feeds = {name: tf.constant(array, dtype=specs[name].dtype) for name, array in inputs.items()}
        try:
            outputs = self._functions[signature](**feeds)
        except tf.errors.InvalidArgumentError as error:
            raise InvalidInputError(_tf_error_text(error)) from None
        return {name: value.numpy() for name, value in outputs.items()}

    def _replay_warmup(self) -> int:
        """Runs each PredictionLog request of assets.extra/tf_serving_warmup_requests once.

        Returns:
            The number of requests replayed.

        Raises:
            RuntimeError: a record is not a PredictLog, or a request fails.
        """
        path = self.path / "assets.extra" / keys.WARMUP_FILE
        if not path.exists():
            return 0
        count = 0
        for record in tf.data.TFRecordDataset(str(path)).take(MAX_WARMUP_RECORDS):
            log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
            if log.WhichOneof("log_type") != "predict_log":
                raise RuntimeError(
                    f"{path}: record {count} is a {log.WhichOneof('log_type')}, only predict is supported")
            request = log.predict_log.request
            inputs = {key: tensors.from_tensor_proto(key, proto) for key, proto in request.inputs.items()}
            try:
                self.predict(request.model_spec.signature_name, inputs)
            except Exception as error:
                raise RuntimeError(f"warmup request {count} from {path} failed: {error}") from None
            count += 1
        return count


def _read_signature_defs(path: Path) -> get_model_metadata_pb2.SignatureDefMap:
    """The SignatureDefs of the SavedModel's serving MetaGraph, as GetModelMetadata reports them."""
    saved_model = saved_model_pb2.SavedModel.FromString((path / "saved_model.pb").read_bytes())
    result = get_model_metadata_pb2.SignatureDefMap()
    for name, signature_def in saved_model.meta_graphs[0].signature_def.items():
        result.signature_def[name].CopyFrom(signature_def)
    return result


def _tf_error_text(error: tf.errors.OpError) -> str:
    """The useful line(s) of a TensorFlow op error, without graph execution boilerplate."""
    skip = ("Graph execution error", "Detected at node", "<stack traces", "[[", "File ", "Error in user-defined")
    lines = [line.strip() for line in error.message.splitlines()]
    kept = [line for line in lines if line and not line.startswith(skip)]
    return "; ".join(kept) or error.message

