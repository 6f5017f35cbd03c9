"""The server process's XLA settings: a persistent compilation cache, or no XLA at all.

Only GPU-target exports hold XLA-compiled functions (`impasto.export.signatures`);
these settings change nothing for a default (CPU-target) export.

- `use_compilation_cache`: TensorFlow's persistent XLA cache
  (``--tf_xla_persistent_cache_directory`` in ``TF_XLA_FLAGS``). Every program XLA
  compiles is written there as ``xla_compile_cache__<hashes>__<device>.pb`` and
  read back instead of compiled the next time the same function meets the same
  shapes, in this process, after a restart or in another server sharing the
  directory. TensorFlow reads ``TF_XLA_FLAGS`` once, when it first needs any XLA
  flag (listing the devices is enough), so `impasto.cli` applies ``--xla_cache_dir``
  (`cache_dir_in`) before it imports TensorFlow.
- `disable_compilation`: what tensorflow_model_server does unless it is started with
  ``--xla_cpu_compilation_enabled`` or ``--xla_gpu_compilation_enabled``
  (TensorFlow's ``tensorflow::DisableXlaCompilation``): every must-compile function
  then fails with INTERNAL "XLA compilation disabled". `impasto serve --disable_xla`
  uses it to show how an export fares on a stock server.
"""

import ctypes
import os
from pathlib import Path

from impasto.model.errors import InvalidInputError

CACHE_DIR_OPTION = "--xla_cache_dir"
"""`impasto serve`'s flag naming the cache directory."""
FLAGS_VARIABLE = "TF_XLA_FLAGS"
CACHE_DIRECTORY_FLAG = "--tf_xla_persistent_cache_directory"
_DISABLE_SYMBOL = "_ZN10tensorflow21DisableXlaCompilationEv"  # tensorflow::DisableXlaCompilation()
_LIBRARY = "libtensorflow_cc.so.2"


def use_compilation_cache(directory: str | os.PathLike, environ=os.environ) -> str:
    """Points TensorFlow's persistent XLA compilation cache at `directory` (created if missing).

    A cache directory that ``TF_XLA_FLAGS`` already names is kept.

    Returns:
        The resulting ``TF_XLA_FLAGS``.

    Raises:
        InvalidInputError: the directory cannot be created or written.
    """
    path = Path(directory)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InvalidInputError(f"XLA cache directory {directory}: {error.strerror}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise InvalidInputError(f"XLA cache directory {directory}: not writable")
    flags = environ.get(FLAGS_VARIABLE, "")
    if CACHE_DIRECTORY_FLAG not in flags:
        flags = f"{flags} {CACHE_DIRECTORY_FLAG}={path.resolve()}".strip()
        environ[FLAGS_VARIABLE] = flags
    return flags


def cache_dir_in(argv: list[str]) -> str | None:
    """The value of ``--xla_cache_dir DIR`` or ``--xla_cache_dir=DIR`` in `impasto serve`'s arguments, if any.

    For `impasto.cli`, which must set ``TF_XLA_FLAGS`` before TensorFlow is imported, so
    before `impasto.serving.server_cli` (which defines and checks the flag) can parse it.
    """
    for index, argument in enumerate(argv):
        if argument == CACHE_DIR_OPTION and index + 1 < len(argv):
            return argv[index + 1]
        if argument.startswith(CACHE_DIR_OPTION + "="):
            return argument.split("=", 1)[1]
    return None


def disable_compilation() -> None:
    """Makes every later XLA compile in this process fail, as in a tensorflow_model_server without XLA flags.

    Raises:
        RuntimeError: this TensorFlow build does not export the switch.
    """
    import tensorflow as tf  # Not at the top: `cache_dir_in` and `use_compilation_cache` run before TensorFlow loads.

    try:
        library = ctypes.CDLL(os.path.join(os.path.dirname(tf.__file__), _LIBRARY))
        switch = getattr(library, _DISABLE_SYMBOL)
    except (OSError, AttributeError) as error:
        raise RuntimeError(f"this TensorFlow cannot disable XLA compilation: {error}") from None
    switch.restype, switch.argtypes = None, []
    switch()
