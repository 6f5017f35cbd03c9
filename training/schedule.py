"""The learning rate at each training step: linear warm-up, then constant or cosine decay.

A pure function of the global step and the settings, so a resumed run follows
the same curve as one that never stopped.
"""

import math

from impasto.training.config import TrainConfig

SCHEDULES = ("constant", "cosine")


def learning_rate_at(step: int, config: TrainConfig) -> float:
    """Adam's step size for the update that takes the network from `step` to `step + 1`.

    Args:
        step: updates already made in this run (0 for the first).
        config: reads ``learning_rate`` (the peak), ``warmup_steps``, ``lr_schedule``,
            ``final_lr_fraction`` and ``steps``.

    Returns:
        ``learning_rate * (step + 1) / warmup_steps`` during warm-up; after it, the peak
        (``constant``) or a half cosine from the peak down to ``final_lr_fraction`` of it at
        ``steps`` (``cosine``).
    """
    peak = config.learning_rate
    if step < config.warmup_steps:
        return peak * (step + 1) / config.warmup_steps
    if config.lr_schedule == "constant":
        return peak
    decay_steps = max(config.steps - config.warmup_steps, 1)
    progress = min((step - config.warmup_steps) / decay_steps, 1.0)
    floor = peak * config.final_lr_fraction
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
