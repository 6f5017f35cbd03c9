"""`BatchJob`: what one `impasto batch` run does, checked before Beam starts (no Beam or TensorFlow here)."""

import hashlib
import random
from dataclasses import dataclass, field
from pathlib import Path

from impasto.model import image_io
from impasto.model.errors import InvalidInputError

ASSIGN_MODES = ("each", "random", "hash")
FORMATS = {"png": "PNG", "jpg": "JPEG"}


def model_label(name_or_path: str) -> str:
    """How outputs and the manifest name a model: a bundled name as is, a path by its last component."""
    path = Path(name_or_path.rstrip("/"))
    if path.name.isdigit() or path.stem == "bundle":  # A SavedModel version, a training run's bundle.
        path = path.parent
    return (path.stem if path.suffix == ".npz" else path.name) or name_or_path


@dataclass(frozen=True)
class BatchJob:
    """What `impasto batch` does.

    Attributes:
        input: a Beam glob (``**`` spans folders) or a folder (searched for image files).
        output_dir: where outputs go, at each input's relative path (per model with --assign each
            and several models), with the manifest and dead letters.
        models: what each --model named: bundled names, run directories, .npz bundles, SavedModels.
        assign: each (every model for every image), random (one, drawn with `seed` per path),
            hash (one, by a hash of the path: the same across jobs and seeds).
        size: resize each input to this long side first; None: its own size.
        format: png or jpg.
        seed: seeds --assign random.
        max_pixels: refuse inputs whose header claims more pixels.
        flush_seconds: how often each worker records progress (the most a kill can lose).
    """

    input: str
    output_dir: str
    models: tuple[str, ...]
    assign: str = "each"
    size: int | None = None
    format: str = "png"
    seed: int = 0
    max_pixels: int = image_io.DEFAULT_MAX_PIXELS
    flush_seconds: float = 5.0
    labels: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if not self.models:
            raise InvalidInputError("--model needs at least one model")
        labels = {model_label(spec): spec for spec in self.models}
        if len(labels) != len(self.models):
            raise InvalidInputError(f"--model: two models share a name ({', '.join(self.models)})")
        if self.assign not in ASSIGN_MODES:
            raise InvalidInputError(f"--assign must be one of {', '.join(ASSIGN_MODES)}, not {self.assign!r}")
        if self.format not in FORMATS:
            raise InvalidInputError(f"--format must be one of {', '.join(FORMATS)}, not {self.format!r}")
        if self.size is not None and self.size < 1:
            raise InvalidInputError(f"--size must be positive, not {self.size}")
        if self.max_pixels < 1:
            raise InvalidInputError(f"--max-pixels must be positive, not {self.max_pixels}")
        object.__setattr__(self, "labels", labels)

    def assigned(self, relative: str) -> list[str]:
        """The model labels an input (by its relative path) is stylized with; stable across reruns."""
        names = list(self.labels)
        if self.assign == "each" or len(names) == 1:
            return names
        if self.assign == "random":
            return [random.Random(f"{self.seed}\0{relative}").choice(names)]
        digest = hashlib.sha256(relative.encode()).digest()
        return [names[int.from_bytes(digest[:8], "big") % len(names)]]
