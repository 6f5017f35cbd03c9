"""A network's training history: one segment per training process, carried from bundle to bundle.

A segment is a dict: ``steps`` (``"first-last"``, counted over the network's whole life),
``wall_seconds``, ``images_per_second``, ``recipe`` (what the process trained with),
``machine`` (the CPU the time was spent on, `CpuIdentity.key`: a rate means little without it)
and ``finished`` (UTC); segments taken over from a bundle also name its ``model``, and a
widening is a segment of no steps with ``widened``. A run directory's ``model.json`` holds the history
as far as its newest checkpoint: the trainer records its segment before each checkpoint, and a
resumed run first cuts the history to the checkpoint that restored (`history_up_to`).
"""

import time

from impasto.model.cpu import this_cpu

UNTIMED_NOTE = "trained by a process that stopped before it recorded its time"


def span(segment: dict) -> tuple[int, int]:
    """A segment's first and last step, counted over the network's life."""
    first, last = segment["steps"].split("-")
    return int(first), int(last)


def segment(config, first: int, last: int, seconds: float) -> dict:
    """One training process's entry: steps `first` to `last`, its wall time, and its recipe.

    Args:
        config: the run's `TrainConfig`.
        first, last: steps counted over the network's life (a bundle's steps plus the run's).
        seconds: the process's wall time so far.
    """
    return {"steps": f"{first}-{last}", "wall_seconds": round(seconds, 1),
            "images_per_second": round((last - first) * config.batch_size / max(seconds, 1e-9), 3),
            "recipe": {"width": config.width, "residual_blocks": config.residual_blocks,
                       "noise_channels": config.noise_channels, "blur_fraction": config.blur_fraction,
                       "image_size": config.image_size, "max_short_side_scale": config.max_short_side_scale,
                       "crop_aspects": list(config.crop_aspects),
                       "batch_size": config.batch_size,
                       "learning_rate": config.learning_rate, "lr_schedule": config.lr_schedule,
                       "warmup_steps": config.warmup_steps, "final_lr_fraction": config.final_lr_fraction,
                       "schedule_steps": config.steps, "mixed_precision": config.mixed_precision},
            "machine": this_cpu().key(),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def history_up_to(segments: list[dict], step: int) -> list[dict]:
    """The history as far as `step`, the step of the checkpoint a resumed run restored.

    A process can stop between recording its segment and finishing the checkpoint after it, or
    the newest checkpoint may not restore, so the record can run past the restored step: the
    steps after it are gone and are cut. A process that stopped before it recorded anything
    (a run of an older impasto) leaves a gap: it becomes a segment without a time.

    Args:
        segments: the history in order, as ``model.json`` holds it.
        step: the restored step, counted over the network's life.
    """
    history = []
    for entry in segments:
        first, last = span(entry)
        if first >= step and last > first:
            continue
        history.append(dict(entry, steps=f"{first}-{step}") if last > step else entry)
    end = span(history[-1])[1] if history else 0
    if end < step:
        history.append({"steps": f"{end}-{step}", "wall_seconds": None, "note": UNTIMED_NOTE})
    return history


def total_wall_seconds(segments: list[dict]) -> float:
    """The wall time of every timed segment, in seconds."""
    return round(sum(entry.get("wall_seconds") or 0.0 for entry in segments), 1)
