"""In-graph optimizers over one flat float32 vector: L-BFGS and Adam; the one Adam update rule.

Both keep all of their state in ``tf.Variable``s between calls and run many
iterations inside one ``tf.function`` (a ``tf.while_loop``), so the host only
looks in between chunks of iterations (for progress bars, snapshots and logs).
L-BFGS keeps its curvature history across chunks; nothing goes through numpy
or scipy.

The objective is a callable ``value_and_gradient(x) -> (value, gradient, terms)``
with ``x`` and ``gradient`` float32 ``[n]``, ``value`` a float32 scalar and
``terms`` a float32 ``[k]`` vector of loss parts kept for reporting.

Given ``bounds=(low, high)``, both hold every coordinate of ``x`` in that box at
every iteration (the pixels of an image in the pixel contract, [0, 255]):
Adam projects each step onto the box; L-BFGS is a projected quasi-Newton method
(Kim, Sra and Dhillon 2010): coordinates at a bound whose gradient points out
of the box are held for the iteration and kept out of the two-loop recursion,
and the line search follows the step projected onto the box. Without bounds
they are the plain unconstrained methods.
"""

from collections.abc import Callable
from dataclasses import dataclass

import tensorflow as tf

Objective = Callable[[tf.Tensor], tuple[tf.Tensor, tf.Tensor, tf.Tensor]]
Bounds = tuple[float, float] | None


def adam_update(gradient: tf.Tensor, first_moment: tf.Tensor, second_moment: tf.Tensor, step: tf.Tensor,
                learning_rate, beta1: float = 0.9, beta2: float = 0.999, epsilon: float = 1e-8):
    """One Adam step (Kingma and Ba 2015, with the paper's efficient form of the bias correction).

    The pixel optimizer here and the training optimizer (`impasto.training.adam`) both use it.

    Args:
        gradient: float32, any shape.
        first_moment: float32, the gradient's shape: the moving mean before this step.
        second_moment: float32, the gradient's shape: the moving mean of squares before this step.
        step: float32 scalar, the 1-based number of this step.
        learning_rate: step size (a float or a float32 scalar tensor).

    Returns:
        (first_moment, second_moment, change): the new moments and the change to subtract from the
        variable, each of the gradient's shape.
    """
    first = beta1 * first_moment + (1.0 - beta1) * gradient
    second = beta2 * second_moment + (1.0 - beta2) * tf.square(gradient)
    rate = learning_rate * tf.sqrt(1.0 - beta2**step) / (1.0 - beta1**step)
    return first, second, rate * first / (tf.sqrt(second) + epsilon)


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
    """State shared by both optimizers: the point, its value, gradient and loss parts, and the box it stays in.

    Args:
        objective: ``value_and_gradient(x)``, see the module docstring.
        size: length of ``x``.
        num_terms: length of the objective's ``terms``.
        config: optimizer settings.
        bounds: ``(low, high)`` that every coordinate of ``x`` stays within, or None (unconstrained).
    """

    def __init__(self, objective: Objective, size: int, num_terms: int, config: OptimizerConfig,
                 bounds: Bounds = None):
        super().__init__()
        if bounds is not None and not bounds[0] < bounds[1]:
            raise ValueError(f"bounds must be (low, high) with low < high, got {bounds}")
        self.objective = objective
        self.config = config
        self.bounds = bounds
        self.x = tf.Variable(tf.zeros([size]), name="x")
        self.value = tf.Variable(0.0, name="value")
        self.gradient = tf.Variable(tf.zeros([size]), name="gradient")
        self.terms = tf.Variable(tf.zeros([num_terms]), name="terms")
        self.iterations = tf.Variable(0, dtype=tf.int64, name="iterations")
        self.evaluations = tf.Variable(0, dtype=tf.int64, name="evaluations")
        self.converged = tf.Variable(False, name="converged")

    def start(self, x0: tf.Tensor) -> None:
        """Sets the starting point (projected onto the bounds) and evaluates the objective there."""
        self.x.assign(self._project(tf.reshape(tf.cast(x0, tf.float32), [-1])))
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

    def _project(self, x: tf.Tensor) -> tf.Tensor:
        """The point of the box nearest to `x` (`x` itself without bounds)."""
        if self.bounds is None:
            return x
        return tf.clip_by_value(x, *self.bounds)

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
        state = self._load_state()
        done = tf.constant(0, tf.int64)
        for _ in tf.range(tf.cast(steps, tf.int64)):
            if self.converged:
                break
            state = self._step(state)
            done += 1
        self._store_state(state)
        self.iterations.assign_add(done)
        return done

    def _load_state(self) -> tf.Tensor:
        """State carried through the loop as a tensor rather than a variable (none by default)."""
        return tf.zeros([0])

    def _store_state(self, state: tf.Tensor) -> None:
        """Keeps the loop state for the next `run`."""
        del state  # Nothing to keep by default.

    def _step(self, state: tf.Tensor) -> tf.Tensor:
        """One iteration: takes the loop state and returns it, updated."""
        raise NotImplementedError


class Lbfgs(_PixelOptimizer):
    """Limited-memory BFGS with a backtracking (Armijo) line search.

    The search tries the full quasi-Newton step first, which is accepted in
    almost every iteration, so an iteration usually costs one evaluation.

    The direction is the two-loop recursion's, computed without a loop over
    n-vectors ("vector-free" L-BFGS, Chen et al. 2014): one matrix product per
    iteration gives every inner product the recursion needs, the recursion runs
    on m x m matrices as two triangular solves, and a second product forms the
    direction. The correction pairs are one [m, 2, n] tensor carried through
    the loop and updated in place (a sliced assign to a variable would copy all
    of it, and switch the variable to copying on every read), and stored in
    `pairs` between calls of `run`. So the bookkeeping reads the history twice
    an iteration and stays a small fraction of one evaluation.

    With bounds, the same recursion runs on the gradient of the coordinates
    free to move, and the line search backtracks along the projected path
    (see the module docstring); a few more n-vector passes an iteration.
    """

    def __init__(self, objective: Objective, size: int, num_terms: int, config: OptimizerConfig = OptimizerConfig(),
                 bounds: Bounds = None):
        super().__init__(objective, size, num_terms, config, bounds)
        m = config.history_size
        self.pairs = tf.Variable(tf.zeros([m, 2, size]), name="pairs")  # pairs[i] = (s_i, y_i), a ring buffer.
        self.s_dot_y = tf.Variable(tf.zeros([m, m]), name="s_dot_y")  # [i, j] = s_i . y_j
        self.y_dot_y = tf.Variable(tf.zeros([m, m]), name="y_dot_y")  # [i, j] = y_i . y_j
        self.stored = tf.Variable(0, name="stored")
        self.newest = tf.Variable(-1, name="newest")

    def _reset(self) -> None:
        super()._reset()
        self.stored.assign(0)
        self.newest.assign(-1)

    def _load_state(self) -> tf.Tensor:
        return self.pairs.read_value()

    def _store_state(self, state: tf.Tensor) -> None:
        self.pairs.assign(state)

    def _direction(self, pairs: tf.Tensor, gradient: tf.Tensor) -> tf.Tensor:
        """``-H g`` with ``H`` the L-BFGS inverse Hessian estimate; a scaled ``-g`` without history."""
        return tf.cond(self.stored > 0, lambda: self._quasi_newton_direction(pairs, gradient),
                       lambda: self._gradient_direction(gradient))

    def _gradient_direction(self, gradient: tf.Tensor) -> tf.Tensor:
        """``-g`` scaled for an iteration without history: the Polyak step ``f / |g|^2``, which takes a
        positive objective to zero, its lower bound, if it were linear; the line search halves it where the
        objective curves up first. (The ``min(1, 1 / |g|_1)`` of torch's L-BFGS moved the pixels of a
        white-noise start at 512 px by 1e-5, which changed no float32 objective value and stopped the run.)
        An objective not above zero falls back to that ``min(1, 1 / |g|_1)``."""
        squared_norm = tf.reduce_sum(gradient * gradient)
        polyak = tf.math.divide_no_nan(self.value, squared_norm)
        scale = tf.where(self.value > 0.0, polyak, tf.minimum(1.0, 1.0 / tf.reduce_sum(tf.abs(gradient))))
        return -gradient * scale

    def _quasi_newton_direction(self, pairs: tf.Tensor, gradient: tf.Tensor) -> tf.Tensor:
        m = self.config.history_size
        newest = self.newest.read_value()
        rows = tf.reshape(pairs, [2 * m, -1])  # s_0, y_0, s_1, y_1, ...
        # One pass over the history: products[b, i, a] = (g, s_new, y_new)[b] . (s_i, y_i)[a].
        vectors = tf.concat([gradient[None], pairs[newest]], 0)
        products = tf.reshape(tf.matmul(vectors, rows, transpose_b=True), [3, m, 2])
        s_dot_y, y_dot_y = self._refresh_newest(products, newest)

        # Reorder newest first: k-th newest pair is in slot (newest - k) mod m, and slot i holds the
        # (newest - i) mod m-th newest, so the same gather maps both ways. Unfilled slots get rho = 0.
        order = tf.math.floormod(newest - tf.range(m), m)
        valid = tf.cast(tf.range(m) < self.stored, tf.float32)
        mask = valid[:, None] * valid[None, :]
        sy = tf.gather(tf.gather(s_dot_y, order), order, axis=1) * mask
        yy = tf.gather(tf.gather(y_dot_y, order), order, axis=1) * mask
        s_g, y_g = tf.gather(products[0, :, 0], order), tf.gather(products[0, :, 1], order)
        rho = tf.math.divide_no_nan(valid, tf.linalg.diag_part(sy))
        gamma = sy[0, 0] / yy[0, 0]
        off_diagonal = 1.0 - tf.eye(m)
        # First loop, newest to oldest: alpha_k = rho_k s_k . (g - sum_{j<k} alpha_j y_j).
        first = tf.eye(m) + rho[:, None] * tf.linalg.band_part(sy, -1, 0) * off_diagonal
        alpha = tf.linalg.triangular_solve(first, (rho * s_g)[:, None], lower=True)[:, 0]
        # Second loop, oldest to newest, from r = gamma q: c_k = alpha_k - rho_k y_k . (r + sum_{i>k} c_i s_i).
        w = gamma * (y_g - tf.linalg.matvec(yy, alpha))
        second = tf.eye(m) + rho[:, None] * tf.linalg.band_part(tf.transpose(sy), 0, -1) * off_diagonal
        c = tf.linalg.triangular_solve(second, (alpha - rho * w)[:, None], lower=False)[:, 0]
        # -r = -gamma g + sum_k gamma alpha_k y_k - sum_k c_k s_k: the second pass over the history.
        coefficients = tf.stack([-tf.gather(c, order), gamma * tf.gather(alpha, order)], axis=1)
        return tf.matmul(tf.reshape(coefficients, [1, -1]), rows)[0] - gamma * gradient

    def _refresh_newest(self, products: tf.Tensor, newest: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Rewrites the newest pair's row and column of `s_dot_y` and `y_dot_y` (same values if not new)."""
        is_newest = tf.range(self.config.history_size) == newest
        # Two reshapes rather than a transpose: oneDNN has no bool transpose and logs an error line for it.
        is_row, is_column = is_newest[:, None], is_newest[None, :]
        s_dot_y = tf.where(is_row, products[1, None, :, 1], tf.where(is_column, products[2, :, 0, None], self.s_dot_y))
        y_dot_y = tf.where(is_row, products[2, None, :, 1], tf.where(is_column, products[2, :, 1, None], self.y_dot_y))
        self.s_dot_y.assign(s_dot_y)
        self.y_dot_y.assign(y_dot_y)
        return s_dot_y, y_dot_y

    def _held(self, gradient: tf.Tensor) -> tf.Tensor | None:
        """bool [n]: the coordinates at a bound that the gradient pushes out of the box (None without bounds).

        They stay where they are for this iteration: zero in the gradient the direction is
        computed from and in the direction itself.
        """
        if self.bounds is None:
            return None
        low, high = self.bounds
        return tf.logical_or(tf.logical_and(self.x <= low, gradient > 0.0),
                             tf.logical_and(self.x >= high, gradient < 0.0))

    def _step(self, pairs: tf.Tensor) -> tf.Tensor:
        gradient = self.gradient.read_value()
        held = self._held(gradient)
        if held is not None:
            gradient = tf.where(held, 0.0, gradient)
        direction = self._direction(pairs, gradient)
        if held is not None:
            direction = tf.where(held, 0.0, direction)
        slope = tf.tensordot(gradient, direction, 1)
        if slope >= 0.0:  # Not a descent direction: forget the history, go down the gradient.
            self.stored.assign(0)
            direction = self._gradient_direction(gradient)
            slope = tf.tensordot(gradient, direction, 1)
        step = tf.constant(1.0)
        new_x = self._project(self.x + direction)
        new_value, new_gradient, new_terms = self._evaluate(new_x)
        for _ in tf.range(self.config.max_line_search):
            if new_value <= self.value + 1e-4 * self._predicted_change(step, slope, gradient, new_x):
                break
            step *= 0.5
            new_x = self._project(self.x + step * direction)
            new_value, new_gradient, new_terms = self._evaluate(new_x)
        decreased = new_value < self.value
        pairs = self._remember(pairs, new_x - self.x, new_gradient - self.gradient, decreased)
        if decreased:
            self.converged.assign(self._has_converged(self.value, new_value))
            self.x.assign(new_x)
            self.value.assign(new_value)
            self.gradient.assign(new_gradient)
            self.terms.assign(new_terms)
        else:  # The line search found no decrease: nothing left to gain here.
            self.converged.assign(True)
        return pairs

    def _predicted_change(self, step: tf.Tensor, slope: tf.Tensor, gradient: tf.Tensor, new_x: tf.Tensor):
        """The first-order change of the objective from ``x`` to `new_x`, for the Armijo test.

        ``step * slope`` without bounds; with them, ``g . (new_x - x)`` along the projected path
        (`gradient` is zero where coordinates are held, which do not move).
        """
        if self.bounds is None:
            return step * slope
        return tf.tensordot(gradient, new_x - self.x, 1)

    def _remember(self, pairs: tf.Tensor, s: tf.Tensor, y: tf.Tensor, decreased: tf.Tensor) -> tf.Tensor:
        """Stores ``(s, y)`` when the step was taken and the curvature is positive; returns the pairs.

        The update is unconditional (a pair rejected rewrites the newest slot
        with its own contents), so that no branch holds a second reference to
        `pairs` and the scatter can reuse its buffer.
        """
        keep = tf.logical_and(decreased, tf.tensordot(s, y, 1) > 1e-10)
        newest = tf.maximum(self.newest, 0)
        slot = tf.where(keep, tf.math.floormod(self.newest + 1, self.config.history_size), newest)
        pair = tf.where(keep, tf.stack([s, y]), pairs[newest])
        if keep:
            self.newest.assign(slot)
            self.stored.assign(tf.minimum(self.stored + 1, self.config.history_size))
        return tf.tensor_scatter_nd_update(pairs, slot[None, None], pair[None])


class Adam(_PixelOptimizer):
    """Adam (Kingma and Ba 2015) on the pixels; one evaluation per iteration."""

    def __init__(self, objective: Objective, size: int, num_terms: int, config: OptimizerConfig = OptimizerConfig(),
                 bounds: Bounds = None):
        super().__init__(objective, size, num_terms, config, bounds)
        self.first_moment = tf.Variable(tf.zeros([size]), name="first_moment")
        self.second_moment = tf.Variable(tf.zeros([size]), name="second_moment")
        self.adam_steps = tf.Variable(0.0, name="adam_steps")

    def _reset(self) -> None:
        super()._reset()
        self.first_moment.assign(tf.zeros_like(self.first_moment))
        self.second_moment.assign(tf.zeros_like(self.second_moment))
        self.adam_steps.assign(0.0)

    def _step(self, state: tf.Tensor) -> tf.Tensor:
        self.adam_steps.assign_add(1.0)
        first, second, change = adam_update(self.gradient, self.first_moment, self.second_moment, self.adam_steps,
                                            self.config.learning_rate)
        self.first_moment.assign(first)
        self.second_moment.assign(second)
        self.x.assign(self._project(self.x - change))
        old_value = self.value.read_value()
        value, gradient, terms = self._evaluate(self.x)
        self.converged.assign(self._has_converged(old_value, value))
        self.value.assign(value)
        self.gradient.assign(gradient)
        self.terms.assign(terms)
        return state


def make_optimizer(objective: Objective, size: int, num_terms: int, config: OptimizerConfig,
                   bounds: Bounds = None) -> _PixelOptimizer:
    """Builds the optimizer that ``config.method`` names, held to `bounds` if given (see `_PixelOptimizer`)."""
    optimizers = {"lbfgs": Lbfgs, "adam": Adam}
    if config.method not in optimizers:
        raise ValueError(f"unknown optimizer {config.method!r}; choose one of {sorted(optimizers)}")
    return optimizers[config.method](objective, size, num_terms, config, bounds)
