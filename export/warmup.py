"""TensorFlow Serving warmup records: ``assets.extra/tf_serving_warmup_requests``.

The one module that knows the file: the exporter writes it (`write_warmup_file`),
and `impasto serve` reads it back (`read_warmup_requests`) to replay at load.

TensorFlow Serving replays these `PredictionLog` records when it loads a version,
before the version takes traffic. Each is a ``serving_default`` request holding one
flat grey PNG of a size chosen at export time (``impasto export --warmup-sizes``); in an
export with ``model.tflite`` (`impasto.export.tflite_model`) each is a ``stylize_tensor``
request instead, the one signature both of the version's forms serve, since TF Serving
replays the records on whichever form it loaded and a record it cannot run fails the load.

The first record builds the signature's graph runtime, which every size needs; in a
GPU-target export each record also makes XLA compile the program of its size's
bucket. A few sizes that clients really send are enough: warming every bucket pair
(49 with the default ladder, up to 2048 x 2048) kept a version out of service for
minutes and left the server holding the largest activations' memory. Sizes not warmed
still work: on the CPU target they need no compile at all, on the GPU target the
first request of another bucket compiles its program (once per process, or once per
cache directory with TensorFlow's persistent XLA cache) while other requests run.
(``stylize_tensor`` compiles per batch size too; it is not warmed.)
"""

import os
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

from impasto.export import keys
from impasto.model.image_io import encode_image

_GREY = 128.0
MAX_WARMUP_RECORDS = 1000
"""TF Serving's limit on warmup records per version: later records are not read."""


def warmup_path(version_dir: str | os.PathLike) -> Path:
    """``<version_dir>/assets.extra/tf_serving_warmup_requests``, where TF Serving looks for the records."""
    return Path(version_dir) / keys.ASSETS_EXTRA / keys.WARMUP_FILE


def warmed_signature(tflite_model: bool) -> str:
    """The signature an export's warmup records call: ``stylize_tensor`` when the version also holds
    ``model.tflite`` (the one signature both its forms serve), else ``serving_default``."""
    return keys.STYLIZE_TENSOR if tflite_model else keys.SERVING_DEFAULT


def warmup_request(height: int, width: int, model_name: str,
                   signature: str = keys.SERVING_DEFAULT) -> predict_pb2.PredictRequest:
    """A request with one flat grey image of `height` x `width` pixels: a PNG for `keys.SERVING_DEFAULT`,
    float32 pixels [1, height, width, 3] for `keys.STYLIZE_TENSOR`."""
    image = np.full([height, width, 3], _GREY, np.float32)
    request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature))
    if signature == keys.SERVING_DEFAULT:
        request.inputs[keys.IMAGE_BYTES].CopyFrom(tf.make_tensor_proto([encode_image(image)], dtype=tf.string))
    elif signature == keys.STYLIZE_TENSOR:
        request.inputs[keys.IMAGES].CopyFrom(tf.make_tensor_proto(image[None]))
    else:
        raise ValueError(f"no warmup request for signature {signature!r}")
    return request


def write_warmup_file(path: str | os.PathLike, sizes, model_name: str, signature: str = keys.SERVING_DEFAULT) -> int:
    """Writes one PredictionLog record per (height, width) in `sizes`, each calling `signature`; returns how many."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with tf.io.TFRecordWriter(str(path)) as writer:
        for height, width in sizes:
            request = warmup_request(height, width, model_name, signature)
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
            count += 1
    return count


def read_warmup_requests(path: str | os.PathLike) -> list[predict_pb2.PredictRequest]:
    """Parses the record file back into its PredictRequests: the first `MAX_WARMUP_RECORDS`, as TF Serving does.

    Raises:
        ValueError: a record holds another kind of log than a PredictLog.
        tf.errors.DataLossError: the file is not a TFRecord file.
    """
    requests = []
    for index, record in enumerate(tf.data.TFRecordDataset(str(path)).take(MAX_WARMUP_RECORDS)):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        if not log.HasField("predict_log"):
            raise ValueError(f"{path}: record {index} is a {log.WhichOneof('log_type')}, only predict is supported")
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
