"""Training settings: one frozen dataclass and its named presets."""

from dataclasses import dataclass, field, replace

from impasto.model.feedforward.layout import RESIDUAL_BLOCKS
from impasto.model.lossnet.loss_config import LossConfig


@dataclass(frozen=True)
class TrainConfig:
    """Settings of feed-forward training.

    Attributes:
        steps: optimizer steps in all (resumed runs continue up to this).
        batch_size: global batch size, split across replicas.
        image_size: side of the square training crops, in pixels.
        style_size: long side the style image is resized to before its Gram matrices are taken.
        learning_rate: Adam's peak step size (see `impasto.training.schedule`).
        lr_schedule: ``constant`` (the paper's) or ``cosine`` decay after the warm-up.
        warmup_steps: steps of linear warm-up from 0 to ``learning_rate``.
        final_lr_fraction: with ``cosine``, the step size at ``steps`` as a fraction of the peak.
        width: transformer width multiplier.
        residual_blocks: the transformer's residual blocks (the paper's 5; more with ``init_from`` a
            shallower bundle appends blocks that start near the identity, `impasto.model.feedforward.deepen`).
        noise_channels: channels of the fixed noise texture the transformer reads beside the photo
            (`impasto.model.feedforward.noise_input`; 0 = the paper's network; with ``init_from`` a
            bundle that reads fewer, the new channels start with zero weights).
        blur_fraction: share of training crops blurred with a random Gaussian
            (`impasto.training.data.random_crop`), so the network meets smooth, bokeh-like
            photos; 0 = the paper's crops.
        max_short_side_scale: before its crop, a photo is resized to just cover the crop (a square
            crop: its short side to ``image_size``) times a factor drawn from [1, this]
            (`impasto.training.data.random_crop`): the wider the range, the wider the range of
            scales at which the network meets a photo's objects.
        crop_aspects: shapes of the training crops, width / height, each with the pixels of an
            ``image_size`` square (`impasto.training.data.crop_shape`); batches take them in turn
            (``(1.0, 16 / 9)``: square, then 16:9, ...). ``(1.0,)`` = the paper's square crops.
        loss: layers and weights of the perceptual loss.
        pooling: VGG pooling for the loss network.
        mixed_precision: compute the transformer and the loss network in bfloat16, keeping the variables,
            the losses and the optimizer in float32. bfloat16 has float32's exponent range, so no loss
            scaling is used. Pays on GPUs, TPUs and CPUs with bfloat16 units (AVX-512 BF16, AMX); on
            CPUs without them it is slower.
        validation_photos: photos held out from training for the validation loss and images.
        max_pixels: photos whose header claims more pixels are skipped (and counted) before decoding,
            so a decompression bomb in the data folder cannot exhaust memory.
        log_every: steps between TensorBoard scalar writes.
        checkpoint_every: steps between checkpoints.
        validate_every: steps between validation passes (loss and images).
        seed: seeds shuffling, crops and initial weights.
    """

    steps: int = 40000
    batch_size: int = 4
    image_size: int = 256
    style_size: int = 512
    learning_rate: float = 1e-3
    lr_schedule: str = "constant"
    warmup_steps: int = 0
    final_lr_fraction: float = 0.0
    width: float = 1.0
    residual_blocks: int = RESIDUAL_BLOCKS
    noise_channels: int = 0
    blur_fraction: float = 0.0
    max_short_side_scale: float = 1.2
    crop_aspects: tuple[float, ...] = (1.0,)
    loss: LossConfig = field(default_factory=LossConfig.johnson)
    pooling: str = "max"
    mixed_precision: bool = False
    validation_photos: int = 8
    max_pixels: int = 40_000_000
    log_every: int = 50
    checkpoint_every: int = 500
    validate_every: int = 500
    seed: int = 0

    @classmethod
    def paper(cls) -> "TrainConfig":
        """Johnson et al.'s settings: full width, 256 px, batch 4, 40k steps (~2 epochs of COCO)."""
        return cls()

    @classmethod
    def cpu_small(cls) -> "TrainConfig":
        """A half-width network trained for a few thousand steps: fits a CPU session."""
        return cls(steps=2000, width=0.5, image_size=192, style_size=384, log_every=20, checkpoint_every=200,
                   validate_every=250, validation_photos=4)

    @classmethod
    def cpu(cls) -> "TrainConfig":
        """`cpu_small` with a 20-step warm-up and cosine decay to zero over the run: the CPU recipe.

        The measured choice so far (docs/training.md): continuing a bundled model, the cosine run
        ended lower than the constant rate of `cpu_small` and than a 3x higher peak, at equal steps.
        """
        return replace(cls.cpu_small(), lr_schedule="cosine", warmup_steps=20)

    @classmethod
    def tiny(cls) -> "TrainConfig":
        """A few steps of a very small network on 32 px crops, for tests."""
        return cls(steps=4, batch_size=2, image_size=32, style_size=48, width=0.125, validation_photos=2,
                   log_every=1, checkpoint_every=2, validate_every=2)


PRESETS = {"paper": TrainConfig.paper, "cpu": TrainConfig.cpu, "cpu_small": TrainConfig.cpu_small,
           "tiny": TrainConfig.tiny}


def preset(name: str, **overrides) -> TrainConfig:
    """A named preset with some fields replaced (None values are ignored)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return replace(PRESETS[name](), **{key: value for key, value in overrides.items() if value is not None})
