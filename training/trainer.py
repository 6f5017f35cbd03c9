"""The feed-forward training loop: one style, one run directory, under a `tf.distribute` strategy.

A run directory holds ``model.json`` (what network this is), ``style.png``
(the style image as used), ``checkpoints/`` (`tf.train.CheckpointManager`:
network, optimizer state and step), ``logs/`` (TensorBoard) and, once training
ends, ``bundle.npz``/``bundle.json`` (the network in compact float16 form, as
bundled models ship). Running the same command again resumes from the latest
checkpoint. A new run can start from a trained bundle (``init_from``) instead of
random weights; ``model.json`` and the bundle then carry that bundle's history
under ``segments``, one entry per training process, so a model's whole history
(steps, wall time, recipe) travels with it; a process records its entry before
each checkpoint, so a process that is killed leaves its steps timed as far as
the checkpoint it left (see `impasto.training.history`). On resume, if the newest checkpoint
is unreadable (a write cut short, a corrupt disk), the newest one that restores
is used, and the skip is logged.
"""

import dataclasses
import json
import logging
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from impasto.model import image_io
from impasto.model.errors import InvalidInputError
from impasto.model.feedforward.bundles import BUNDLE_FORMAT, check_format, load_bundle_arrays, write_bundle
from impasto.model.feedforward.deepen import NEW_BLOCK_AMPLITUDE, deepen_weights
from impasto.model.feedforward.layout import RESIDUAL_BLOCKS, residual_block_count
from impasto.model.feedforward.noise_input import add_noise_input, noise_channel_count
from impasto.model.feedforward.transformer import TransformerNet
from impasto.model.feedforward.widen import widen_weights, widening_factor
from impasto.model.files import atomic_write_bytes
from impasto.model.lossnet.losses import gram_matrix, style_transfer_loss
from impasto.model.lossnet.vgg import VggFeatures
from impasto.model.lossnet.weights import VggWeights
from impasto.training import data, records
from impasto.training.adam import Adam, first_replica_variables
from impasto.training.config import TrainConfig
from impasto.training.history import history_up_to, segment, total_wall_seconds
from impasto.training.schedule import learning_rate_at

LOG = logging.getLogger("impasto.training")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass(frozen=True)
class TrainResult:
    """Summary of one `Trainer.train` call."""

    steps: int
    losses: dict[str, float]
    validation_loss: float | None
    images_per_second: float
    wall_seconds: float
    skipped_files: int


def choose_strategy() -> tf.distribute.Strategy:
    """MultiWorkerMirroredStrategy when ``TF_CONFIG`` is set, else MirroredStrategy over local devices."""
    if os.environ.get("TF_CONFIG"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.MirroredStrategy()


def _is_chief(strategy: tf.distribute.Strategy) -> bool:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "chief" or (not has_chief and resolver.task_type == "worker" and resolver.task_id == 0)


class Trainer:
    """Trains one `TransformerNet` for one style.

    Args:
        config: training settings.
        style_image: float32 [H, W, 3] in [0, 255].
        run_dir: where checkpoints, logs and model.json go.
        vgg_weights: loss-network weights (default: ImageNet VGG16).
        strategy: a `tf.distribute.Strategy`; chosen by `choose_strategy` when None.
        style_name: recorded in model.json.
        init_from: a bundle (.npz path) whose weights a fresh run starts from; ignored when the
            run directory already has a checkpoint.
    """

    def __init__(self, config: TrainConfig, style_image: np.ndarray, run_dir: str | os.PathLike,
                 vgg_weights: VggWeights | None = None, strategy: tf.distribute.Strategy | None = None,
                 style_name: str = "style", init_from: str | os.PathLike | None = None):
        self.config = config
        self.init_from = init_from
        self.run_dir = Path(run_dir)
        self.strategy = strategy or choose_strategy()
        self.is_chief = _is_chief(self.strategy)
        compute_dtype = tf.bfloat16 if config.mixed_precision else tf.float32
        with self.strategy.scope(), first_replica_variables():
            self.network = TransformerNet(width=config.width, residual_blocks=config.residual_blocks,
                                          compute_dtype=compute_dtype, seed=config.seed,
                                          noise_channels=config.noise_channels)
            self.optimizer = Adam(self.network.trainable_variables, config.learning_rate)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        with self.strategy.scope():
            self.vgg = VggFeatures(vgg_weights, pooling=config.pooling, dtype=compute_dtype)
        self.style_image = image_io.resize_long_side(style_image, config.style_size)
        style_layers = [layer for layer, _ in config.loss.style_layers]
        style_features = self.vgg(tf.constant(self.style_image[None]), style_layers)
        self.style_grams = {layer: tf.constant(gram_matrix(style_features[layer])) for layer in style_layers}
        self.checkpoint = tf.train.Checkpoint(transformer=self.network, optimizer=self.optimizer, step=self.step)
        checkpoint_dir = self.run_dir / "checkpoints"
        if not self.is_chief:  # Workers other than the chief write to a scratch directory (TF's convention).
            checkpoint_dir = Path(tempfile.mkdtemp(prefix="impasto-worker-ckpt-"))
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(checkpoint_dir), max_to_keep=3)
        self.style_name = style_name

    def restore(self) -> int:
        """Restores the newest checkpoint that can be read, if there is one; returns the step it reached.

        A checkpoint that fails to restore (truncated or corrupt files) is skipped with a
        warning and the one before it is tried.

        Raises:
            InvalidInputError: the run directory holds another format or width of network, or it has
                checkpoints but none of them can be restored.
        """
        metadata_path = self.run_dir / "model.json"
        if metadata_path.is_file():
            metadata = json.loads(metadata_path.read_text())
            check_format(metadata, metadata_path)
            saved_width = metadata["width"]
            if not math.isclose(saved_width, self.config.width):
                raise InvalidInputError(f"{self.run_dir} holds a width-{saved_width} network; this run asks for "
                                        f"width {self.config.width}: use another --out or the same width")
            saved_blocks = metadata.get("residual_blocks", RESIDUAL_BLOCKS)
            if saved_blocks != self.config.residual_blocks:
                raise InvalidInputError(f"{self.run_dir} holds a network of {saved_blocks} residual blocks; this run "
                                        f"asks for {self.config.residual_blocks}: use another --out or the same "
                                        "--residual-blocks")
            saved_noise = metadata.get("noise_channels", 0)
            if saved_noise != self.config.noise_channels:
                raise InvalidInputError(f"{self.run_dir} holds a network that reads {saved_noise} noise channels; "
                                        f"this run asks for {self.config.noise_channels}: use another --out or the "
                                        "same --noise-channels")
        newest_first = list(reversed(self.manager.checkpoints))
        for path in newest_first:
            try:
                self.checkpoint.restore(path).assert_existing_objects_matched()
            except (tf.errors.OpError, ValueError, IndexError, AssertionError) as error:
                LOG.warning("checkpoint %s cannot be restored (%s: %s); trying the one before it",
                            path, type(error).__name__, str(error).splitlines()[0] if str(error) else "")
                continue
            if path != newest_first[0]:
                LOG.warning("resuming from %s, the newest checkpoint that restores", path)
            return int(self.step.numpy())
        if newest_first:
            raise InvalidInputError(f"{self.run_dir}: none of the checkpoints ({', '.join(newest_first)}) can be "
                                    "restored; move the checkpoints/ folder away to start afresh")
        return int(self.step.numpy())

    def _initialize_from_bundle(self) -> tuple[int, list[dict]]:
        """Loads `init_from`'s weights into the network; returns its steps and training history (segments).

        A bundle narrower than the run by a whole factor (width 0.5 for a width-1.0 run) is widened
        first, computing the same function (`widen_weights`), and one with fewer residual blocks
        deepened, computing nearly the same (`deepen_weights`); the history records both.

        Raises:
            InvalidInputError: the bundle is unreadable, its width is neither the run's nor a
                whole fraction of it, or it has more residual blocks than the run.
        """
        arrays, metadata = load_bundle_arrays(self.init_from)
        bundle_width, steps = metadata["width"], int(metadata.get("steps", 0))
        earlier = metadata.get("segments") or [{"steps": f"0-{metadata.get('steps')}",
                                                 "wall_seconds": metadata.get("wall_seconds")}]
        earlier = [dict(segment, model=metadata.get("style")) for segment in earlier]
        if not math.isclose(bundle_width, self.config.width):
            factor = widening_factor(bundle_width, self.config.width)
            if factor is None:
                raise InvalidInputError(
                    f"{self.init_from} holds a width-{bundle_width} network; this run asks for {self.config.width}, "
                    f"which is not a whole multiple of it (pass --width {bundle_width}, or a multiple)")
            LOG.info("widening %s from width %s to %s (%d copies of each channel)", self.init_from, bundle_width,
                     self.config.width, factor)
            arrays = widen_weights(arrays, factor, seed=self.config.seed)
            earlier.append({"steps": f"{steps}-{steps}", "wall_seconds": 0.0, "model": metadata.get("style"),
                            "widened": {"from_width": bundle_width, "to_width": self.config.width}})
        bundle_blocks, blocks = residual_block_count(arrays), self.config.residual_blocks
        if bundle_blocks > blocks:
            raise InvalidInputError(f"{self.init_from} has {bundle_blocks} residual blocks; this run asks for "
                                    f"{blocks}, and a network is not made shallower (pass --residual-blocks "
                                    f"{bundle_blocks})")
        if bundle_blocks < blocks:
            LOG.info("deepening %s from %d to %d residual blocks (copies of the last at %g of its amplitude)",
                     self.init_from, bundle_blocks, blocks, NEW_BLOCK_AMPLITUDE)
            arrays = deepen_weights(arrays, blocks)
            earlier.append({"steps": f"{steps}-{steps}", "wall_seconds": 0.0, "model": metadata.get("style"),
                            "deepened": {"from_residual_blocks": bundle_blocks, "to_residual_blocks": blocks,
                                         "new_block_amplitude": NEW_BLOCK_AMPLITUDE}})
        bundle_noise, noise = noise_channel_count(arrays), self.config.noise_channels
        if bundle_noise > noise:
            raise InvalidInputError(f"{self.init_from} reads {bundle_noise} noise channels; this run asks for {noise} "
                                    f"(pass --noise-channels {bundle_noise})")
        if bundle_noise < noise:
            LOG.info("%s reads %d noise channels; the %d added start at zero weight", self.init_from, bundle_noise,
                     noise - bundle_noise)
            arrays = add_noise_input(arrays, noise)
            earlier.append({"steps": f"{steps}-{steps}", "wall_seconds": 0.0, "model": metadata.get("style"),
                            "noise_added": {"from_noise_channels": bundle_noise, "to_noise_channels": noise}})
        self.network.load_weights_dict(arrays)
        return steps, earlier

    def _saved_metadata(self) -> dict:
        path = self.run_dir / "model.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def _write_metadata(self, steps_before: int, segments: list[dict]) -> None:
        metadata = {"format": BUNDLE_FORMAT, "width": self.config.width,
                    "residual_blocks": self.config.residual_blocks, "noise_channels": self.config.noise_channels,
                    "style": self.style_name,
                    "train_config": dataclasses.asdict(self.config), "steps_before": steps_before,
                    "segments": segments}
        atomic_write_bytes(self.run_dir / "model.json", json.dumps(metadata, indent=2).encode())

    def _loss(self, images: tf.Tensor):
        """Perceptual loss of the network on a batch: (total, terms, stylized)."""
        loss_config = self.config.loss
        content_targets = self.vgg(images, [layer for layer, _ in loss_config.content_layers])
        stylized = self.network(images)
        features = self.vgg(stylized, loss_config.all_layers)
        total, terms = style_transfer_loss(stylized, features, content_targets, self.style_grams, loss_config)
        return total, terms, stylized

    @tf.function
    def _train_step(self, batch):
        replicas = self.strategy.num_replicas_in_sync
        variables = self.network.trainable_variables

        def replica_step(images):
            with tf.GradientTape() as tape:
                total, terms, _ = self._loss(images)
                scaled = total / replicas
            gradients = tape.gradient(scaled, variables)
            gradients = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, gradients)
            self.optimizer.apply(gradients, variables)
            return terms | {"total": total}

        per_replica = self.strategy.run(replica_step, args=(batch,))
        self.step.assign_add(1)
        return {name: self.strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None)
                for name, value in per_replica.items()}

    @tf.function
    def _validation_step(self, images):
        total, _, stylized = self._loss(images)
        return total, stylized

    def train(self, photos: list[str], validation: list[str] = (), show_progress: bool = True,
              record_files: list[str] = ()) -> TrainResult:
        """Trains up to ``config.steps``; resumes first if a checkpoint exists.

        Args:
            photos: photo files to train on (decoded here), or empty with `record_files`.
            validation: photo files for the validation loss and images.
            show_progress: show a progress bar.
            record_files: TFRecord shards of `impasto prepare-data` to train on instead of `photos`;
                each worker reads its own shards.

        Raises:
            TrainingDiverged: the loss became NaN or Inf (the last good checkpoint is kept).
            KeyboardInterrupt: after saving a checkpoint at the current step.
        """
        config = self.config
        start_step = self.restore()
        saved = self._saved_metadata()
        steps_before, segments = saved.get("steps_before", 0), saved.get("segments", [])
        if start_step == 0 and self.init_from is not None and self.manager.latest_checkpoint is None:
            steps_before, segments = self._initialize_from_bundle()
        segments = history_up_to(segments, steps_before + start_step)
        self._write_metadata(steps_before, segments)
        atomic_write_bytes(self.run_dir / "style.png", image_io.encode_image(self.style_image))
        skipped = data.SkippedFiles()
        if record_files:
            iterator = iter(self.strategy.distribute_datasets_from_function(
                lambda context: records.training_dataset(list(record_files), context, config.image_size,
                                                         config.batch_size, config.seed + start_step,
                                                         config.blur_fraction, config.max_short_side_scale,
                                                         config.crop_aspects)))
        else:
            dataset = data.training_dataset(photos, config.image_size, config.batch_size, config.seed + start_step,
                                            skipped, config.max_pixels, config.blur_fraction,
                                            config.max_short_side_scale, config.crop_aspects)
            options = tf.data.Options()
            options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
            iterator = iter(self.strategy.experimental_distribute_dataset(dataset.with_options(options)))
        validation_images = data.validation_batch(list(validation), config.image_size, config.max_pixels)
        writer = (tf.summary.create_file_writer(str(self.run_dir / "logs")) if self.is_chief
                  else tf.summary.create_noop_writer())
        bar = tqdm(total=config.steps, initial=start_step, unit="step", disable=not show_progress, dynamic_ncols=True)
        losses, validation_loss, started = {}, None, time.perf_counter()
        step = start_step

        def history_at(end_step: int) -> list[dict]:
            """The history with this process's segment, steps `start_step` to `end_step`, at the end."""
            if end_step == start_step:
                return segments
            return segments + [segment(config, steps_before + start_step, steps_before + end_step,
                                       time.perf_counter() - started)]

        try:
            while step < config.steps:
                try:
                    batch = next(iterator)
                except tf.errors.InvalidArgumentError:
                    if photos:
                        skipped.raise_if_none_decoded(len(set(photos)))
                    raise
                self.optimizer.learning_rate.assign(learning_rate_at(step, config))
                losses = {name: float(value) for name, value in self._train_step(batch).items()}
                step = int(self.step.numpy())
                if not math.isfinite(losses["total"]):
                    raise TrainingDiverged(
                        f"the loss became {losses['total']} at step {step}; training stopped and the last good "
                        f"checkpoint ({self.manager.latest_checkpoint}) is kept. Try a lower --lr or --style-weight.")
                rate = (step - start_step) * config.batch_size / (time.perf_counter() - started)
                bar.update(1)
                bar.set_postfix({"loss": f"{losses['total']:.4g}", "content": f"{losses['content']:.3g}",
                                 "style": f"{losses['style']:.3g}", "tv": f"{losses['tv']:.3g}",
                                 "img/s": f"{rate:.2f}"})
                with writer.as_default(step=step):
                    if step % config.log_every == 0:
                        for name, value in losses.items():
                            tf.summary.scalar(f"loss/{name}", value)
                        tf.summary.scalar("learning_rate", self.optimizer.learning_rate)
                        tf.summary.scalar("images_per_second", rate)
                    if len(validation_images) and (step % config.validate_every == 0 or step == config.steps):
                        validation_loss = self._validate(validation_images)
                if step % config.checkpoint_every == 0:
                    self._write_metadata(steps_before, history_at(step))
                    self.manager.save(checkpoint_number=step)
        except KeyboardInterrupt:
            step = int(self.step.numpy())
            self._write_metadata(steps_before, history_at(step))
            self.manager.save(checkpoint_number=step)
            raise
        finally:
            bar.close()
            writer.flush()
        elapsed = time.perf_counter() - started
        self._write_metadata(steps_before, history_at(step))
        if self.manager.latest_checkpoint is None or not self.manager.latest_checkpoint.endswith(f"-{step}"):
            self.manager.save(checkpoint_number=step)
        result = TrainResult(steps=step, losses=losses, validation_loss=validation_loss,
                             images_per_second=(step - start_step) * config.batch_size / max(elapsed, 1e-9),
                             wall_seconds=elapsed, skipped_files=skipped.count)
        if self.is_chief:
            self._write_bundle(result)
        return result

    def _write_bundle(self, result: TrainResult) -> None:
        """Writes ``bundle.npz``/``bundle.json``: the trained network in compact float16 form."""
        metadata = self._saved_metadata()
        segments = metadata.get("segments", [])
        # The newest segment's figures: a rerun of a finished run trains nothing and must not report 0 s.
        newest = segments[-1] if segments else {"images_per_second": round(result.images_per_second, 3),
                                                "wall_seconds": round(result.wall_seconds, 1)}
        metadata.update(steps=metadata.get("steps_before", 0) + result.steps,
                        images_per_second=newest.get("images_per_second"), wall_seconds=newest.get("wall_seconds"),
                        total_wall_seconds=total_wall_seconds(segments))
        write_bundle(self.network, metadata, self.run_dir / "bundle.npz")

    def _validate(self, images: np.ndarray) -> float:
        """Writes the validation loss and stylized images (inside a summary context); returns the loss."""
        total, stylized = self._validation_step(tf.constant(images))
        tf.summary.scalar("validation/loss", total)
        tf.summary.image("validation/stylized", tf.cast(stylized, tf.uint8), max_outputs=4)
        return float(total)
