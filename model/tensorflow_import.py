"""Importing TensorFlow without its start-up lines on the terminal: the CLI, Beam's workers and the tests' workers."""

import os


def import_tensorflow_quietly() -> None:
    """Imports TensorFlow with its start-up log lines (CUDA probing, oneDNN notes) kept off the terminal.

    Those lines are written by native code before any log level applies, so
    stderr is pointed at /dev/null for the import alone. Set IMPASTO_TF_LOGS=1
    to see them.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if os.environ.get("IMPASTO_TF_LOGS"):
        return
    saved_stderr = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow

            tensorflow.config.list_physical_devices()  # Device probing logs its own lines.
    finally:
        os.dup2(saved_stderr, 2)
        os.close(saved_stderr)
