"""TensorFlow Serving's classic test models, built here with the signatures, tensor names and versions of its
testdata (tensorflow_serving/servables/tensorflow/testdata and tensorflow/cc/saved_model/testdata).

half_plus_two and half_plus_three are TF1 graph SavedModels (tf.compat.v1 SavedModelBuilder), as upstream's
are; the TF2 models are the ones tensorflow_model_server_test.py saves with tf.saved_model.save.
"""

from pathlib import Path

import tensorflow as tf

v1 = tf.compat.v1
PREDICT, CLASSIFY, REGRESS = "tensorflow/serving/predict", "tensorflow/serving/classify", "tensorflow/serving/regress"
VERSION = 123
"""Upstream's version directory (00000123)."""


def _signature(inputs: dict, outputs: dict, method: str):
    return v1.saved_model.signature_def_utils.build_signature_def(
        {key: v1.saved_model.utils.build_tensor_info(tensor) for key, tensor in inputs.items()},
        {key: v1.saved_model.utils.build_tensor_info(tensor) for key, tensor in outputs.items()}, method)


def _save_tf1(export_dir: Path, build) -> Path:
    """Runs `build()` (returns the signature map) in a fresh graph and session and saves it for "serve"."""
    builder = v1.saved_model.Builder(str(export_dir))
    with tf.Graph().as_default(), v1.Session() as session:
        signatures = build()
        session.run(v1.global_variables_initializer())
        builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map=signatures)
    builder.save()
    return export_dir


def save_half_plus(export_dir: Path, b: float = 2.0, classify_x2: bool = True) -> Path:
    """y = 0.5 * x + b (half_plus_two, or half_plus_three with b = 3), with y2 = 0.5 * x + 3 and
    y3 = 0.5 * x2 + 3, and upstream's signatures:

    serving_default x -> y (predict); regress_x_to_y, regress_x_to_y2, classify_x_to_y from serialized
    tf.Examples ("tf_example:0", unknown rank); regress_x2_to_y3 and (TensorFlow's cc/saved_model/testdata
    copy only, `classify_x2`) classify_x2_to_y3 from x2. TF Serving's saved_model_half_plus_two_cpu has no
    classify_x2_to_y3.
    """
    def build():
        a, b_var, c = v1.Variable(0.5, name="a"), v1.Variable(b, name="b"), v1.Variable(3.0, name="c")
        serialized = v1.placeholder(tf.string, name="tf_example")
        features = v1.io.parse_example(serialized, {
            "x": v1.io.FixedLenFeature([1], tf.float32),
            "x2": v1.io.FixedLenFeature([1], tf.float32, default_value=[0.0])})
        for feature in features.values():  # [-1, 1], as in upstream's graph (parse_example of an unknown rank).
            feature.set_shape([None, 1])
        x = tf.identity(features["x"], name="x")
        y = tf.identity(a * x + b_var, name="y")
        y2 = tf.identity(a * x + c, name="y2")
        x2 = tf.identity(features["x2"], name="x2")
        y3 = tf.identity(a * x2 + c, name="y3")
        signatures = {
            "serving_default": _signature({"x": x}, {"y": y}, PREDICT),
            "regress_x_to_y": _signature({"inputs": serialized}, {"outputs": y}, REGRESS),
            "regress_x_to_y2": _signature({"inputs": serialized}, {"outputs": y2}, REGRESS),
            "regress_x2_to_y3": _signature({"inputs": x2}, {"outputs": y3}, REGRESS),
            "classify_x_to_y": _signature({"inputs": serialized}, {"scores": y}, CLASSIFY),
        }
        if classify_x2:
            signatures["classify_x2_to_y3"] = _signature({"inputs": x2}, {"scores": y3}, CLASSIFY)
        return signatures

    return _save_tf1(export_dir, build)


def save_counter(export_dir: Path) -> Path:
    """saved_model_counter: a float variable and get_counter, incr_counter, incr_counter_by (input "delta"),
    reset_counter, each answering "output"."""
    def build():
        counter = v1.Variable(0.0, dtype=tf.float32, name="counter")
        delta = v1.placeholder(tf.float32, name="delta")
        return {
            "get_counter": _signature({}, {"output": counter.value()}, PREDICT),
            "incr_counter": _signature({}, {"output": tf.identity(counter.assign_add(1.0))}, PREDICT),
            "incr_counter_by": _signature({"delta": delta}, {"output": tf.identity(counter.assign_add(delta))},
                                          PREDICT),
            "reset_counter": _signature({}, {"output": tf.identity(counter.assign(0.0))}, PREDICT),
        }

    return _save_tf1(export_dir, build)


def save_without_signatures(export_dir: Path) -> Path:
    """bad_half_plus_two's fault as a SavedModel: y = 0.5 * x + 2 in the graph, but no signature at all."""
    def build():
        x = v1.placeholder(tf.float32, name="x")
        tf.identity(v1.Variable(0.5, name="a") * x + 2.0, name="y")
        return {}

    return _save_tf1(export_dir, build)


def save_tf2_product(export_dir: Path) -> Path:
    """test_tf_saved_model_save: {"y": v1 * v2 * x} with v1 = 3, v2 = 2 and x of any shape (TensorSpec(None))."""
    root = tf.train.Checkpoint()
    root.v1, root.v2 = tf.Variable(3.0), tf.Variable(2.0)
    root.f = tf.function(lambda x: {"y": root.v1 * root.v2 * x})
    tf.saved_model.save(root, str(export_dir), root.f.get_concrete_function(tf.TensorSpec(None, tf.float32)))
    return export_dir


def save_tf2_two_signatures(export_dir: Path) -> Path:
    """test_tf_saved_model_save_multiple_signatures: serving_default answers y = 1, custom_signature_key y = 2."""
    root = tf.train.Checkpoint()
    root.f = tf.function(lambda x: {"y": 1.0}, input_signature=[tf.TensorSpec(None, tf.float32)])
    root.g = tf.function(lambda x: {"y": 2.0}, input_signature=[tf.TensorSpec(None, tf.float32)])
    tf.saved_model.save(root, str(export_dir), signatures={"serving_default": root.f, "custom_signature_key": root.g})
    return export_dir


def save_keras_sequential(export_dir: Path) -> Path:
    """test_sequential_keras_saved_model_save: Input "x" of shape (1,) and an identity Lambda "y"."""
    model = tf.keras.models.Sequential()
    model.add(tf.keras.layers.Input(dtype="float32", shape=(1,), name="x"))
    model.add(tf.keras.layers.Lambda(lambda x: x, name="y"))
    tf.saved_model.save(model, str(export_dir))
    return export_dir


def save_keras_distributed(export_dir: Path) -> Path:
    """test_distrat_sequential_keras_saved_model_save: Input "x" (1,), Dense(1) with kernel ones and bias zeros,
    an identity Lambda "y", built under a MirroredStrategy over two virtual CPUs.

    The virtual CPUs must be configured before TensorFlow runs anything: call this in a fresh process
    (`python -m tfserving_models keras_distributed DIR`).
    """
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    with tf.distribute.MirroredStrategy(devices=("/cpu:0", "/cpu:1")).scope():
        model = tf.keras.models.Sequential()
        model.add(tf.keras.layers.Input(dtype="float32", shape=(1,), name="x"))
        model.add(tf.keras.layers.Dense(1, kernel_initializer="ones", bias_initializer="zeros"))
        model.add(tf.keras.layers.Lambda(lambda x: x, name="y"))
    tf.saved_model.save(model, str(export_dir))
    return export_dir


if __name__ == "__main__":
    import sys

    {"keras_distributed": save_keras_distributed}[sys.argv[1]](Path(sys.argv[2]))
