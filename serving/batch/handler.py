"""The Beam `ModelHandler` of `impasto batch`: every worker loads the models once and stylizes batches."""

import dataclasses
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

MAX_BATCH_IMAGES = 8
"""Most images RunInference hands the handler at once (Beam grows batches up to it as they pay)."""


@dataclass(frozen=True)
class StylizeRequest:
    """One image for one model, with what the output step needs.

    Attributes:
        input: the input file's path.
        output: where the result goes.
        model: the model's label (a key of the handler's models).
        image: float32 [H, W, 3] in [0, 255].
        milliseconds: time spent on this image so far (reading and decoding).
    """

    input: str
    output: str
    model: str
    image: np.ndarray
    milliseconds: float = 0.0


class LoadedModels(dict):
    """Label -> stylizer, as one worker loaded them (a class of its own: Beam keeps a weak reference to it)."""


class StylizeModelHandler(ModelHandler[StylizeRequest, PredictionResult, LoadedModels]):
    """Runs named stylizers (`impasto.serving.batch.models.load_stylizer`) on batches of `StylizeRequest`s.

    A batch is split by model and image size, and each same-size group runs as one
    [N, H, W, 3] call: with --size every image of one aspect ratio shares a group.
    The inference of each PredictionResult is float32 [H, W, 3] in [0, 255], and its
    request's milliseconds include its share of the group's run time.

    Args:
        models: label -> what --model named (a bundled name, a run directory, a .npz, a SavedModel).
        intra_op_threads: TensorFlow threads per worker process (None: TensorFlow's default, every core).
    """

    def __init__(self, models: dict[str, str], intra_op_threads: int | None = None):
        super().__init__(max_batch_size=MAX_BATCH_IMAGES)
        self.models = dict(models)
        self.intra_op_threads = intra_op_threads

    def load_model(self) -> LoadedModels:
        """Loads every model once per worker process."""
        from impasto.model.tensorflow_import import import_tensorflow_quietly

        import_tensorflow_quietly()
        import tensorflow as tf

        from impasto.serving.batch.models import load_stylizer

        if self.intra_op_threads:
            try:
                tf.config.threading.set_intra_op_parallelism_threads(self.intra_op_threads)
                tf.config.threading.set_inter_op_parallelism_threads(self.intra_op_threads)
            except RuntimeError:  # TensorFlow already started in this process; its threads stay.
                pass
        return LoadedModels({label: load_stylizer(spec) for label, spec in self.models.items()})

    def run_inference(self, batch: Sequence[StylizeRequest], model: LoadedModels,
                      inference_args: dict | None = None) -> Iterable[PredictionResult]:
        groups = defaultdict(list)
        for index, request in enumerate(batch):
            groups[(request.model, request.image.shape)].append(index)
        results = [None] * len(batch)
        for (label, _), indices in groups.items():
            started = time.perf_counter()
            stylized = model[label].stylize_batch(np.stack([batch[index].image for index in indices]))
            share = (time.perf_counter() - started) * 1000.0 / len(indices)
            for position, index in enumerate(indices):
                request = dataclasses.replace(batch[index], milliseconds=batch[index].milliseconds + share)
                results[index] = PredictionResult(request, stylized[position], model_id=label)
        return results

    def get_num_bytes(self, batch: Sequence[StylizeRequest]) -> int:
        return sum(request.image.nbytes for request in batch)

    def get_metrics_namespace(self) -> str:
        return "impasto_batch"
