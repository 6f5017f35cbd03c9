"""One export served two ways by `impasto serve`: from its SavedModel and from its model.tflite, side by side.

An export made with ``--tflite-model`` (a network of ``--width``, random weights, or
``--source``) is loaded by two `impasto serve` processes at once: one as it stands (the
SavedModel's ``stylize_tensor``, TensorFlow's oneDNN kernels) and one with
``--prefer_tflite_model`` (the same signature from ``model.tflite``, LiteRT with XNNPACK). For
each ``--sizes`` side, one client calls each server in turn (`impasto.model.timing.time_in_turn`:
a shuffled order each round, a pause before each call) with the same float32 [1, S, S, 3]
request over gRPC; the figures are the median milliseconds per request and
``tflite_over_savedmodel``. The engine calibration of this machine
(`impasto.model.feedforward.engines.choose_engine`) is reported beside them: where it picks
``litert``, the version's model.tflite should be the faster form too. Progress goes to stderr;
the figures are one JSON object on the last line of stdout.

Example:
    .venv/bin/python bench/serving_forms.py --sizes 256,512 --repeats 5
"""

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from impasto.model.tensorflow_import import import_tensorflow_quietly

import_tensorflow_quietly()  # First: the imports below load TensorFlow, whose start-up lines stay off stderr.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402  (bench/common.py)
import grpc  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc  # noqa: E402

from impasto.export import keys  # noqa: E402
from impasto.model.feedforward import engines  # noqa: E402
from impasto.model.timing import time_in_turn  # noqa: E402
from impasto.testing import ServerProcess  # noqa: E402

FORMS = {"savedmodel": [], "tflite": ["--prefer_tflite_model"]}
"""Each served form and the `impasto serve` flags that select it."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=float, default=1.0, help="network width, random weights (default 1.0)")
    parser.add_argument("--source", help="export this bundled model / run dir / .npz instead")
    parser.add_argument("--sizes", type=common.int_list, default=[256, 512], help="square sides, e.g. 256,512")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per size (default 5)")
    return parser


def predict_call(stub, images: np.ndarray):
    """A function sending one stylize_tensor request of `images` and returning its output."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name, request.model_spec.signature_name = "bench", keys.STYLIZE_TENSOR
    request.inputs[keys.IMAGES].CopyFrom(tf.make_tensor_proto(images))
    return lambda: tf.make_ndarray(stub.Predict(request, timeout=600).outputs[keys.STYLIZED_IMAGES])


def run(args, work: Path) -> dict:
    model_dir = common.export_for_sizes(work / "bench", args.width, args.source, args.sizes, tflite_model=True)
    servers = {form: ServerProcess(["--model_base_path", model_dir, "--model_name", "bench",
                                    "--file_system_poll_wait_seconds", "0", *flags], work / f"{form}.log", rest=False)
               for form, flags in FORMS.items()}
    results = []
    try:
        channels = {form: grpc.insecure_channel(server.wait_ready(timeout=3600).target,
                                                options=[("grpc.max_receive_message_length", -1)])
                    for form, server in servers.items()}
        stubs = {form: prediction_service_pb2_grpc.PredictionServiceStub(channel) for form, channel in channels.items()}
        for size in args.sizes:
            images = np.random.default_rng(size).uniform(0, 255, [1, size, size, 3]).astype(np.float32)
            calls = {form: predict_call(stub, images) for form, stub in stubs.items()}
            outputs = {form: call() for form, call in calls.items()}  # Untimed first call of this size.
            common.log(f"{size} px: timing {', '.join(calls)} in turn ...")
            seconds = time_in_turn(calls, args.repeats, common.log)
            medians = {form: 1000 * statistics.median(values) for form, values in seconds.items()}
            difference = float(np.abs(outputs["tflite"] - outputs["savedmodel"]).max())
            ratio = medians["tflite"] / medians["savedmodel"]
            results.append({"size": size, "ms": medians, "tflite_over_savedmodel": ratio,
                            "max_abs_difference": difference})
        for channel in channels.values():
            channel.close()
    finally:
        for server in servers.values():
            server.stop(60)
    exported = json.loads((model_dir / "1" / keys.ASSETS_EXTRA / keys.METADATA_FILE).read_text())
    choice = engines.choose_engine(exported["width"])
    return {
        "benchmark": "serving_forms",
        "width": None if args.source else args.width,
        "source": args.source,
        "repeats": args.repeats,
        "results": results,
        "engine_choice": {str(side): choice.engine_for(side, side) for side in args.sizes},
        "environment": common.environment(),
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="impasto-bench-serving-forms-") as work:
        figures = run(args, Path(work))
    common.print_json(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
