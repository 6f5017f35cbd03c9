"""The server's text-proto configuration files, read as tensorflow_model_server reads them.

`models.config` is a `tensorflow.serving.ModelServerConfig`; BatchingParameters,
MonitoringConfig and SSLConfig files hold the messages of the same names. All the
classes come from `impasto.export.tfserving_protos` and are parsed by protobuf's own
text format (`parse_text_proto`): a file written for tensorflow_model_server works
unchanged, and an unknown field is an error.
"""

import os
from pathlib import Path

from tensorflow_serving.config import model_server_config_pb2

from impasto.export.tfserving_config import PROMETHEUS_PATH
from impasto.export.tfserving_protos import parse_text_proto
from impasto.model.errors import InvalidInputError


def parse_channel_arguments(text: str) -> list[tuple[str, int | str]]:
    """tensorflow_model_server's --grpc_channel_arguments: "name=value,name=value" as gRPC server options
    (values that are integers become ints).

    Raises:
        InvalidInputError: an item without "=" or without a name.
    """
    options = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, equals, value = item.partition("=")
        if not equals or not name.strip():
            raise InvalidInputError(f"--grpc_channel_arguments: {item!r} is not name=value")
        value = value.strip()
        options.append((name.strip(), int(value) if value.lstrip("-").isdigit() else value))
    return options


def single_model_config(name: str, base_path: str) -> model_server_config_pb2.ModelServerConfig:
    """The config tensorflow_model_server builds from --model_name and --model_base_path."""
    config = model_server_config_pb2.ModelServerConfig()
    entry = config.model_config_list.config.add(name=name, base_path=str(base_path), model_platform="tensorflow")
    entry.model_version_policy.latest.num_versions = 1
    return config


def resolves_inside(path: str | os.PathLike, root: str | os.PathLike) -> bool:
    """Whether `path`, with every symlink and ``..`` resolved, is `root` or lies below it (also resolved)."""
    return Path(path).resolve().is_relative_to(Path(root).resolve())


def check_model_server_config(config: model_server_config_pb2.ModelServerConfig,
                              model_root: str | os.PathLike | None = None) -> None:
    """Refuses configs tensorflow_model_server refuses: no model list, duplicate or empty names, no base path;
    and base paths that resolve outside `model_root` (symlinks and ``..`` followed).

    Raises:
        InvalidInputError: naming the first problem.
    """
    if config.WhichOneof("config") != "model_config_list":
        raise InvalidInputError(
            "ModelServerConfig must hold a model_config_list (custom_model_config is not supported)")
    seen = set()
    for entry in config.model_config_list.config:
        if not entry.name:
            raise InvalidInputError("every model config needs a name")
        if entry.name in seen:
            raise InvalidInputError(f"Illegal to list model {entry.name} multiple times in config list")
        if not entry.base_path:
            raise InvalidInputError(f"model {entry.name} has no base_path")
        if entry.model_platform not in ("", "tensorflow"):
            raise InvalidInputError(f"model {entry.name}: unsupported model_platform {entry.model_platform!r}")
        if model_root is not None and not resolves_inside(entry.base_path, model_root):
            raise InvalidInputError(f"model {entry.name}: base_path {entry.base_path} resolves to "
                                    f"{Path(entry.base_path).resolve()}, outside the model root "
                                    f"{Path(model_root).resolve()} (see --model_root)")
        seen.add(entry.name)


def prometheus_path(path: str | os.PathLike | None) -> str | None:
    """The metrics path from a monitoring config file, or None when Prometheus export is off."""
    if not path:
        return None
    prometheus = parse_text_proto(path, "MonitoringConfig").prometheus_config
    if not prometheus.enable:
        return None
    return prometheus.path or PROMETHEUS_PATH
