"""In-graph optimizers over one flat float32 vector: L-BFGS and Adam.

Both keep all of their state in ``tf.Variable``s and run many iterations inside
one ``tf.function`` (a ``tf.while_loop``), so the host only looks in between
chunks of iterations (for progress bars, snapshots and logs). L-BFGS keeps
its curvature history across chunks; nothing goes through numpy or scipy.

The objective is a callable ``value_and_gradient(x) -> (value, gradient, terms)``
with ``x`` and ``gradient`` float32 ``[n]``, ``value`` a float32 scalar and
``terms`` a float32 ``[k]`` vector of loss parts kept for reporting.
"""

from collections.abc import Callable
from dataclasses import dataclass

import tensorflow as tf

Objective = Callable[[tf.Tensor], tuple[tf.Tensor, tf.Tensor, tf.Tensor]]


@dataclass(frozen=True)
class OptimizerConfig:
    """Settings of the pixel optimizers.

    Attributes:
        method: ``"lbfgs"`` or ``"adam"``.
        history_size: L-BFGS correction pairs kept.
        max_line_search: L-BFGS backtracking steps before giving up on an iteration.
        learning_rate: Adam step size, in pixel units.
        tolerance: stop when the relative change of the loss over one iteration is below this (0 = never).
    """

    method: str = "lbfgs"
    history_size: int = 20
    max_line_search: int = 10
    learning_rate: float = 10.0
    tolerance: float = 1e-7


class _PixelOptimizer(tf.Module):
    """State shared by both optimizers: the point, its value, gradient and loss parts."""

    def __init__(self, objective: Objective, size: int, num_terms: int, config: OptimizerConfig):
        super().__init__()
        self.objective = objective
        self.config = config
        self.x = tf.Variable(tf.zeros([size]), name="x")
        self.value = tf.Variable(0.0, name="value")
        self.gradient = tf.Variable(tf.zeros([size]), name="gradient")
        self.terms = tf.Variable(tf.zeros([num_terms]), name="terms")
        self.iterations = tf.Variable(0, dtype=tf.int64, name="iterations")
        self.evaluations = tf.Variable(0, dtype=tf.int64, name="evaluations")
        self.converged = tf.Variable(False, name="converged")

    def start(self, x0: tf.Tensor) -> None:
        """Sets the starting point and evaluates the objective there."""
        self.x.assign(tf.reshape(tf.cast(x0, tf.float32), [-1]))
        self._reset()
        self._start()

    @tf.function(jit_compile=False)
    def _start(self):
        value, gradient, terms = self._evaluate(self.x)
        self.value.assign(value)
        self.gradient.assign(gradient)
        self.terms.assign(terms)

    def _evaluate(self, x):
        self.evaluations.assign_add(1)
        return self.objective(x)

    def _reset(self) -> None:
        self.iterations.assign(0)
        self.evaluations.assign(0)
        self.converged.assign(False)

    def _has_converged(self, old_value, new_value) -> tf.Tensor:
        scale = tf.maximum(tf.maximum(tf.abs(old_value), tf.abs(new_value)), 1.0)
        return tf.abs(old_value - new_value) <= self.config.tolerance * scale

    @tf.function
    def run(self, steps: tf.Tensor) -> tf.Tensor:
        """Runs up to `steps` iterations (fewer once converged); returns the number run."""
        done = tf.constant(0, tf.int64)
        for _ in tf.range(tf.cast(steps, tf.int64)):
            if self.converged:
                break
            self._step()
            done += 1
        self.iterations.assign_add(done)
        return done


class Lbfgs(_PixelOptimizer):
    """Limited-memory BFGS with a backtracking (Armijo) line search.

    The search tries the full quasi-Newton step first, which is accepted in
    almost every iteration, so an iteration usually costs one evaluation.
    """

    def __init__(self, objective: Objective, size: int, num_terms: int, config: OptimizerConfig = OptimizerConfig()):
        super().__init__(objective, size, num_terms, config)
        m = config.history_size
        self.s_history = tf.Variable(tf.zeros([m, size]), name="s_history")
        self.y_history = tf.Variable(tf.zeros([m, size]), name="y_history")
        self.rho_history = tf.Variable(tf.zeros([m]), name="rho_history")
        self.stored = tf.Variable(0, name="stored")
        self.newest = tf.Variable(-1, name="newest")

    def _reset(self) -> None:
        super()._reset()
        self.stored.assign(0)
        self.newest.assign(-1)

    def _direction(self) -> tf.Tensor:
        """Two-loop recursion: ``-H g`` with ``H`` the L-BFGS inverse Hessian estimate."""
        m = self.config.history_size
        q = self.gradient.read_value()
        alphas = tf.TensorArray(tf.float32, size=m, clear_after_read=False)
        for k in tf.range(self.stored):
            index = tf.math.floormod(self.newest - k, m)
            alpha = self.rho_history[index] * tf.tensordot(self.s_history[index], q, 1)
            alphas = alphas.write(k, alpha)
            q -= alpha * self.y_history[index]
        if self.stored > 0:
            last_y = self.y_history[self.newest]
            gamma = tf.tensordot(self.s_history[self.newest], last_y, 1) / tf.tensordot(last_y, last_y, 1)
        else:
            gamma = tf.minimum(1.0, 1.0 / tf.reduce_sum(tf.abs(q)))
        r = gamma * q
        for k in tf.range(self.stored - 1, -1, -1):
            index = tf.math.floormod(self.newest - k, m)
            beta = self.rho_history[index] * tf.tensordot(self.y_history[index], r, 1)
            r += self.s_history[index] * (alphas.read(k) - beta)
        return -r

    def _step(self) -> None:
        direction = self._direction()
        slope = tf.tensordot(self.gradient, direction, 1)
        if slope >= 0.0:  # Not a descent direction: forget the history, go down the gradient.
            self.stored.assign(0)
            direction = -self.gradient * tf.minimum(1.0, 1.0 / tf.reduce_sum(tf.abs(self.gradient)))
            slope = tf.tensordot(self.gradient, direction, 1)
        step = tf.constant(1.0)
        new_x = self.x + direction
        new_value, new_gradient, new_terms = self._evaluate(new_x)
        for _ in tf.range(self.config.max_line_search):
            if new_value <= self.value + 1e-4 * step * slope:
                break
            step *= 0.5
            new_x = self.x + step * direction
            new_value, new_gradient, new_terms = self._evaluate(new_x)
        if new_value < self.value:
            self._remember(new_x - self.x, new_gradient - self.gradient)
            self.converged.assign(self._has_converged(self.value, new_value))
            self.x.assign(new_x)
            self.value.assign(new_value)
            self.gradient.assign(new_gradient)
            self.terms.assign(new_terms)
        else:  # The line search found no decrease: nothing left to gain here.
            self.converged.assign(True)

    def _remember(self, s: tf.Tensor, y: tf.Tensor) -> None:
        curvature = tf.tensordot(s, y, 1)
        if curvature > 1e-10:
            index = tf.math.floormod(self.newest + 1, self.config.history_size)
            self.s_history[index].assign(s)
            self.y_history[index].assign(y)
            self.rho_history[index].assign(1.0 / curvature)
            self.newest.assign(index)
            self.stored.assign(tf.minimum(self.stored + 1, self.config.history_size))


class Adam(_PixelOptimizer):
    """Adam (Kingma and Ba 2015) on the pixels; one evaluation per iteration."""

    def __init__(self, objective: Objective, size: int, num_terms: int, config: OptimizerConfig = OptimizerConfig()):
        super().__init__(objective, size, num_terms, config)
        self.first_moment = tf.Variable(tf.zeros([size]), name="first_moment")
        self.second_moment = tf.Variable(tf.zeros([size]), name="second_moment")
        self.adam_steps = tf.Variable(0.0, name="adam_steps")

    def _reset(self) -> None:
        super()._reset()
        self.first_moment.assign(tf.zeros_like(self.first_moment))
        self.second_moment.assign(tf.zeros_like(self.second_moment))
        self.adam_steps.assign(0.0)

    def _step(self) -> None:
        beta1, beta2, epsilon = 0.9, 0.999, 1e-8
        self.adam_steps.assign_add(1.0)
        self.first_moment.assign(beta1 * self.first_moment + (1 - beta1) * self.gradient)
        self.second_moment.assign(beta2 * self.second_moment + (1 - beta2) * tf.square(self.gradient))
        corrected_first = self.first_moment / (1 - beta1**self.adam_steps)
        corrected_second = self.second_moment / (1 - beta2**self.adam_steps)
        self.x.assign_sub(self.config.learning_rate * corrected_first / (tf.sqrt(corrected_second) + epsilon))
        old_value = self.value.read_value()
        value, gradient, terms = self._evaluate(self.x)
        self.converged.assign(self._has_converged(old_value, value))
        self.value.assign(value)
        self.gradient.assign(gradient)
        self.terms.assign(terms)


def make_optimizer(objective: Objective, size: int, num_terms: int, config: OptimizerConfig) -> _PixelOptimizer:
    """Builds the optimizer that ``config.method`` names."""
    optimizers = {"lbfgs": Lbfgs, "adam": Adam}
    if config.method not in optimizers:
        raise ValueError(f"unknown optimizer {config.method!r}; choose one of {sorted(optimizers)}")
    return optimizers[config.method](objective, size, num_terms, config)
