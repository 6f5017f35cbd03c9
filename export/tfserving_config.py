"""The tensorflow_model_server files kept beside the exported models in MODELS_DIR.

- ``models.config``: text `tensorflow.serving.ModelServerConfig`, one entry per model
  directory that holds at least one numbered version with a ``saved_model.pb``.
  Fields other than name, base path and platform (version policies, labels) that a
  person added to an existing entry are kept.
- ``batching_parameters.txt``: text `tensorflow.serving.BatchingParameters`; rewritten
  when batching settings are given, otherwise kept (written with defaults if missing).
- ``monitoring.config``: text `tensorflow.serving.MonitoringConfig`, Prometheus on.

Every write is atomic (temporary file and rename). The message classes come from
`impasto.export.tfserving_protos`.
"""

import os
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from impasto.export.tfserving_protos import message_classes, parse_text_proto
from impasto.model.errors import InvalidInputError
from impasto.model.files import atomic_write_bytes

MODELS_CONFIG = "models.config"
BATCHING_PARAMETERS = "batching_parameters.txt"
MONITORING_CONFIG = "monitoring.config"
PROMETHEUS_PATH = "/monitoring/prometheus/metrics"
TENSORFLOW_PLATFORM = "tensorflow"


@dataclass(frozen=True)
class BatchingConfig:
    """Server-side batching of requests (see TF Serving's batching guide): the one batching config.

    `impasto export` writes it to batching_parameters.txt and both servers read it
    from there (`impasto serve` with `from_file`). The defaults are TensorFlow
    Serving's own, which a field the file leaves out means; `EXPORT_BATCHING` is
    what `impasto export` writes where no flag says otherwise.

    Attributes:
        max_batch_size: most requests merged into one run.
        batch_timeout_micros: how long a partial batch waits for more requests.
        num_batch_threads: batches run concurrently.
        max_enqueued_batches: queue length, in batches, before requests are refused.
        allowed_batch_sizes: optional increasing sizes ending at max_batch_size (for
            tensorflow_model_server; impasto's own batcher runs each batch at its size).
    """

    max_batch_size: int = 32
    batch_timeout_micros: int = 1000
    num_batch_threads: int = os.cpu_count() or 1
    max_enqueued_batches: int = 100
    allowed_batch_sizes: tuple[int, ...] = ()

    def __post_init__(self):
        if min(self.max_batch_size, self.num_batch_threads, self.max_enqueued_batches) < 1:
            raise InvalidInputError("batch size, batch threads and enqueued batches must be at least 1")
        if self.batch_timeout_micros < 0:
            raise InvalidInputError(f"batch timeout must not be negative, not {self.batch_timeout_micros}")
        sizes = list(self.allowed_batch_sizes)
        if sizes and (sizes != sorted(set(sizes)) or sizes[0] < 1 or sizes[-1] != self.max_batch_size):
            raise InvalidInputError(f"allowed batch sizes must increase and end at the max batch size: {sizes}")

    @classmethod
    def from_file(cls, path: str | os.PathLike | None) -> "BatchingConfig":
        """Reads a batching_parameters.txt as `impasto serve` uses it: its four scalar fields (those it
        does not set keep the defaults); None or "" gives the defaults.

        Raises:
            InvalidInputError: the file does not parse or holds a non-positive value.
        """
        if not path:
            return cls()
        message = parse_text_proto(path, "BatchingParameters")
        values = {name: getattr(message, name).value for name in _SCALAR_BATCHING_FIELDS if message.HasField(name)}
        for name, value in values.items():
            if value < (0 if name == "batch_timeout_micros" else 1):
                raise InvalidInputError(f"{path}: {name} must be positive, got {value}")
        return cls(**values)


_SCALAR_BATCHING_FIELDS = ("max_batch_size", "batch_timeout_micros", "num_batch_threads", "max_enqueued_batches")

EXPORT_BATCHING = BatchingConfig(max_batch_size=8, batch_timeout_micros=2000, num_batch_threads=2,
                                 max_enqueued_batches=64)
"""What `impasto export` writes into a new batching_parameters.txt, and its flags' defaults. The byte
signatures stylize a batch one image at a time, so batching saves per-request overhead rather than
GPU passes; padding batches up to `allowed_batch_sizes` would run the padding images too, so none
are set."""


def model_entries(models_dir: Path) -> list[str]:
    """Names of the model directories in `models_dir` that hold a loadable version, sorted."""
    names = []
    for child in sorted(models_dir.iterdir()) if models_dir.is_dir() else ():
        if child.is_dir() and not child.name.startswith("."):
            versions = [v for v in child.iterdir() if v.name.isdigit() and (v / "saved_model.pb").is_file()]
            if versions:
                names.append(child.name)
    return names


def read_models_config(models_dir: Path) -> model_server_config_pb2.ModelServerConfig:
    """The existing models.config, or an empty one.

    Raises:
        InvalidInputError: the file exists but is not a ModelServerConfig.
    """
    path = models_dir / MODELS_CONFIG
    config = model_server_config_pb2.ModelServerConfig()
    if path.is_file():
        try:
            text_format.Parse(path.read_text(), config)
        except (text_format.ParseError, UnicodeDecodeError) as error:
            raise InvalidInputError(f"{path}: not a text ModelServerConfig ({error}); fix or remove it") from None
    return config


def build_models_config(models_dir: Path, serving_base: str | None = None,
                        previous: model_server_config_pb2.ModelServerConfig | None = None):
    """A ModelServerConfig listing every model in `models_dir`.

    Args:
        models_dir: the folder of model directories.
        serving_base: the path the server sees `models_dir` at (e.g. ``/models`` inside
            the container); default `models_dir`, absolute.
        previous: an earlier config whose per-model extras are carried over.
    """
    base = serving_base.rstrip("/") if serving_base else str(models_dir.resolve())
    earlier = {}
    if previous is not None and previous.WhichOneof("config") == "model_config_list":
        earlier = {entry.name: entry for entry in previous.model_config_list.config}
    config = model_server_config_pb2.ModelServerConfig()
    for name in model_entries(models_dir):
        entry = config.model_config_list.config.add()
        if name in earlier:
            entry.CopyFrom(earlier[name])
        entry.name = name
        entry.base_path = f"{base}/{name}"
        entry.model_platform = TENSORFLOW_PLATFORM
    return config


def batching_parameters(batching: BatchingConfig):
    """The BatchingParameters message for `batching`."""
    parameters = message_classes()["BatchingParameters"]()
    parameters.max_batch_size.value = batching.max_batch_size
    parameters.batch_timeout_micros.value = batching.batch_timeout_micros
    parameters.num_batch_threads.value = batching.num_batch_threads
    parameters.max_enqueued_batches.value = batching.max_enqueued_batches
    parameters.allowed_batch_sizes.extend(batching.allowed_batch_sizes)
    return parameters


def monitoring_config():
    """A MonitoringConfig with the Prometheus endpoint on at `PROMETHEUS_PATH`."""
    config = message_classes()["MonitoringConfig"]()
    config.prometheus_config.enable = True
    config.prometheus_config.path = PROMETHEUS_PATH
    return config


def write_server_files(models_dir: str | os.PathLike, batching: BatchingConfig | None = None,
                       serving_base: str | None = None, previous=None) -> list[Path]:
    """Rewrites models.config, batching_parameters.txt and monitoring.config atomically; returns their paths.

    Args:
        models_dir: the folder of model directories.
        batching: batching settings; None keeps an existing batching_parameters.txt
            (a missing one gets `EXPORT_BATCHING`).
        serving_base: see `build_models_config`.
        previous: the ModelServerConfig to carry extras over from; default the file's.
    """
    models_dir = Path(models_dir)
    if previous is None:
        previous = read_models_config(models_dir)
    messages = {
        MODELS_CONFIG: build_models_config(models_dir, serving_base, previous),
        MONITORING_CONFIG: monitoring_config(),
    }
    if batching is not None or not (models_dir / BATCHING_PARAMETERS).is_file():
        messages[BATCHING_PARAMETERS] = batching_parameters(batching or EXPORT_BATCHING)
    written = []
    for file_name, message in messages.items():
        atomic_write_bytes(models_dir / file_name, text_format.MessageToString(message).encode())
        written.append(models_dir / file_name)
    return written
