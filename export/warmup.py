"""TensorFlow Serving warmup records: ``assets.extra/tf_serving_warmup_requests``.

TensorFlow Serving replays these `PredictionLog` records when it loads a version,
before the version takes traffic. One record per (height, width) size bucket, each a
``serving_default`` request holding one flat grey PNG of exactly that size, makes
XLA compile every program the bucketed signatures can need, so the first real
request pays no compile cost. (``stylize_tensor`` compiles per batch size too; its
first call per batch size and bucket is not warmed.)
"""

import os
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

from impasto.export import keys
from impasto.model.image_io import encode_image

_GREY = 128.0


def warmup_request(height: int, width: int, model_name: str) -> predict_pb2.PredictRequest:
    """A serving_default request with one flat grey PNG of `height` x `width` pixels."""
    image = np.full([height, width, 3], _GREY, np.float32)
    request = predict_pb2.PredictRequest(
        model_spec=model_pb2.ModelSpec(name=model_name, signature_name=keys.SERVING_DEFAULT))
    request.inputs[keys.IMAGE_BYTES].CopyFrom(tf.make_tensor_proto([encode_image(image)], dtype=tf.string))
    return request


def write_warmup_file(path: str | os.PathLike, buckets, model_name: str) -> int:
    """Writes one PredictionLog record per (height, width) bucket; returns how many."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with tf.io.TFRecordWriter(str(path)) as writer:
        for height, width in buckets:
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=warmup_request(height, width, model_name)))
            writer.write(log.SerializeToString())
            count += 1
    return count


def read_warmup_requests(path: str | os.PathLike) -> list[predict_pb2.PredictRequest]:
    """Parses the record file back into its PredictRequests (raises on a malformed record)."""
    requests = []
    for record in tf.data.TFRecordDataset(str(path)):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        if not log.HasField("predict_log"):
            raise ValueError(f"{path}: a warmup record holds {log.WhichOneof('log_type')}, not predict_log")
        requests.append(log.predict_log.request)
    return requests


def replay(loaded, requests) -> list[dict]:
    """Runs each request through a loaded SavedModel's signature, as TF Serving's warmup does.

    Args:
        loaded: the result of `tf.saved_model.load`.
        requests: PredictRequests, e.g. from `read_warmup_requests`.

    Returns:
        One {output key: numpy array} per request.
    """
    results = []
    for request in requests:
        signature = loaded.signatures[request.model_spec.signature_name or keys.SERVING_DEFAULT]
        inputs = {name: tf.constant(tf.make_ndarray(proto)) for name, proto in request.inputs.items()}
        results.append({name: value.numpy() for name, value in signature(**inputs).items()})
    return results
