"""TensorFlow Serving's configuration messages, and reading them from text-format files.

The one home of these message classes: `impasto.export.tfserving_config` writes the
files tensorflow_model_server reads, and `impasto.serving` reads the same files.
The pip package tensorflow-serving-api ships ModelServerConfig but not the
BatchingParameters, MonitoringConfig or SSLConfig protos, so each of those that is
missing is defined here from its published fields (session_bundle_config.proto,
monitoring_config.proto, ssl_config.proto), which gives the same text format.
"""

import functools
import os
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format, wrappers_pb2
from tensorflow_serving.config import model_server_config_pb2

from impasto.model.errors import InvalidInputError

_DEFINED = ("BatchingParameters", "MonitoringConfig", "SSLConfig")


@functools.cache
def message_classes() -> dict:
    """{"ModelServerConfig", "BatchingParameters", "MonitoringConfig", "SSLConfig": message class}:
    tensorflow_serving's own classes where the package ships them, else those defined here."""
    classes = {"ModelServerConfig": model_server_config_pb2.ModelServerConfig, **_defined_messages()}
    try:
        from tensorflow_serving.config import monitoring_config_pb2
        from tensorflow_serving.servables.tensorflow import session_bundle_config_pb2
    except ImportError:
        return classes
    classes.update(BatchingParameters=session_bundle_config_pb2.BatchingParameters,
                   MonitoringConfig=monitoring_config_pb2.MonitoringConfig)
    return classes


def parse_text_proto(path: str | os.PathLike, message_name: str):
    """Reads a text-format file into a fresh message of the named type.

    Args:
        path: the file.
        message_name: a key of `message_classes()`.

    Raises:
        InvalidInputError: the file is missing or does not parse.
    """
    message_class = message_classes()[message_name]
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise InvalidInputError(f"{path}: cannot read {message_name} ({error.strerror})") from None
    try:
        return text_format.Parse(text, message_class())
    except text_format.ParseError as error:
        raise InvalidInputError(f"{path}: Error parsing text-format {message_class.DESCRIPTOR.full_name}: "
                                f"{error}") from None


def _defined_messages() -> dict:
    """Builds the three messages, field for field as TF Serving declares them, in a private pool."""
    field = descriptor_pb2.FieldDescriptorProto
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)
    file = descriptor_pb2.FileDescriptorProto(name="impasto/tensorflow_serving_subset.proto",
                                              package="tensorflow.serving", syntax="proto3",
                                              dependency=[wrappers.name])

    def scalars(message, fields) -> None:
        for number, (name, kind) in enumerate(fields, start=1):
            message.field.add(name=name, number=number, label=field.LABEL_OPTIONAL, type=kind)

    batching = file.message_type.add(name="BatchingParameters")
    wrapped = (("max_batch_size", "Int64Value"), ("batch_timeout_micros", "Int64Value"),
               ("max_enqueued_batches", "Int64Value"), ("num_batch_threads", "Int64Value"),
               ("thread_pool_name", "StringValue"))
    for number, (name, wrapper) in enumerate(wrapped, start=1):
        batching.field.add(name=name, number=number, label=field.LABEL_OPTIONAL, type=field.TYPE_MESSAGE,
                           type_name=f".google.protobuf.{wrapper}")
    batching.field.add(name="allowed_batch_sizes", number=6, label=field.LABEL_REPEATED, type=field.TYPE_INT64)
    batching.field.add(name="pad_variable_length_inputs", number=7, label=field.LABEL_OPTIONAL, type=field.TYPE_BOOL)
    scalars(file.message_type.add(name="PrometheusConfig"), [("enable", field.TYPE_BOOL), ("path", field.TYPE_STRING)])
    monitoring = file.message_type.add(name="MonitoringConfig")
    monitoring.field.add(name="prometheus_config", number=1, label=field.LABEL_OPTIONAL, type=field.TYPE_MESSAGE,
                         type_name=".tensorflow.serving.PrometheusConfig")
    scalars(file.message_type.add(name="SSLConfig"), [("server_key", field.TYPE_STRING),
                                                       ("server_cert", field.TYPE_STRING),
                                                       ("custom_ca", field.TYPE_STRING),
                                                       ("client_verify", field.TYPE_BOOL)])
    pool.Add(file)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"tensorflow.serving.{name}"))
            for name in _DEFINED}
