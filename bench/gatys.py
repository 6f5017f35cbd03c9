"""Benchmark of optimization-based style transfer (Gatys et al.): convergence, speed, efficiency.

At each size (long side in pixels), on a bundled photo and painting and
starting from the content image, it measures:

* the total loss after each of ``--iterations`` for the in-graph L-BFGS, for
  Adam (learning rate 10 by default) and for scipy's L-BFGS-B on the same objective (value
  and gradient from one TensorFlow function call per evaluation), every method holding
  the pixels to [0, 255] as `impasto stylize` does (``--unbounded``: unconstrained);
* wall time per iteration, evaluations per iteration, and the time each method
  needs to reach Adam's final loss;
* the time of one bare loss-and-gradient evaluation and its rate: VGG forward
  plus backward to the image, counted as twice the forward FLOPs of the convs
  run, against the rate of a 3x3 convolution (128 to 128 channels, on a
  4x128x128x128 input) timed in pairs with it.

So that a busy machine skews both sides alike, every ratio is taken from
measurements interleaved in time: conv and evaluation alternate, L-BFGS and
Adam run a chunk of ``--chunk`` iterations each in turn, and after every chunk
a run pauses to time one bare evaluation (kept off its clock). CPU-time
versions of the ratios, which other jobs on the machine disturb less, are
reported beside the wall-clock ones. It then checks the issue's targets:

1. L-BFGS ends lower than Adam after the last iteration count, and reaches
   Adam's final loss in less wall time than Adam takes;
2. an L-BFGS iteration costs at most 5% more than one bare evaluation;
3. the bare evaluation runs at >= 85% of the conv rate at 512 px;

with scipy's L-BFGS-B reported against the same targets as the reference.

Progress goes to stderr; the figures are one JSON object on the last line of stdout.

Example:
    .venv/bin/python bench/gatys.py --sizes 256 --iterations 20,50 --no-scipy
"""

import argparse
import functools
import sys
from pathlib import Path

from impasto.model.tensorflow_import import import_tensorflow_quietly

import_tensorflow_quietly()  # First: the imports below load TensorFlow, whose start-up lines stay off stderr.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402  (bench/common.py)
import numpy as np  # noqa: E402
import scipy.optimize  # noqa: E402
import tensorflow as tf  # noqa: E402

from impasto.model import image_io  # noqa: E402
from impasto.model.lossnet.loss_config import LossConfig  # noqa: E402
from impasto.model.lossnet.vgg import VggFeatures  # noqa: E402
from impasto.model.optimize.gatys import blended_style_grams, make_objective  # noqa: E402
from impasto.model.optimize.optimizers import OptimizerConfig, make_optimizer  # noqa: E402

DEFAULT_PHOTO = common.REPO_ROOT / "data/samples/photos/gcompris_chateau_de_chenonceau.jpg"
DEFAULT_STYLE = common.REPO_ROOT / "data/samples/styles/starry_night.jpg"
METHODS = ("lbfgs", "adam", "scipy")
TARGET_ITERATION_COST = 1.05
TARGET_PEAK_FRACTION = 0.85
TARGET_PEAK_SIZE = 512
NEVER_REACHED = {"iteration": None, "seconds": None, "cpu_seconds": None}


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line flags; see ``--help``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photo", type=Path, default=DEFAULT_PHOTO, help="content image (default: %(default)s)")
    parser.add_argument("--style", type=Path, default=DEFAULT_STYLE, help="style image (default: %(default)s)")
    parser.add_argument("--sizes", type=common.int_list, default=[256, 512], help="long sides in px (default: 256,512)")
    parser.add_argument(
        "--optimize-sizes", type=common.int_list, default=None,
        help="sizes at which the optimizers run (default: every size; the others get the evaluation figures only)",
    )
    parser.add_argument(
        "--iterations", type=common.int_list, default=[50, 100, 300],
        help="iteration counts to report the loss at; the largest is the run's length (default: 50,100,300)",
    )
    parser.add_argument("--no-lbfgs", action="store_true", help="skip the in-graph L-BFGS runs")
    parser.add_argument("--no-adam", action="store_true", help="skip the Adam runs")
    parser.add_argument("--no-scipy", action="store_true", help="skip the scipy L-BFGS-B reference runs")
    parser.add_argument("--no-peak", action="store_true", help="skip the conv peak (no efficiency figures)")
    parser.add_argument("--repeats", type=int, default=10, help="conv/evaluation pairs timed per size (default: 10)")
    parser.add_argument("--chunk", type=int, default=10, help="iterations between progress points (default: 10)")
    parser.add_argument("--learning-rate", type=float, default=10.0, help="Adam step size (default: 10)")
    parser.add_argument("--history-size", type=int, default=20, help="L-BFGS correction pairs (default: 20)")
    parser.add_argument("--pooling", choices=("avg", "max"), default="avg", help="VGG pooling (default: avg)")
    parser.add_argument("--unbounded", action="store_true",
                        help="optimize unconstrained pixels (GatysConfig.bounded False); by default every method "
                             "holds them to [0, 255], as `impasto stylize` does")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.chunk < 1:
        parser.error("--repeats and --chunk must be at least 1")
    args.optimize_sizes = args.sizes if args.optimize_sizes is None else args.optimize_sizes
    return args


class Problem:
    """The Gatys objective at one size, plus a bare evaluation to time.

    Args:
        vgg: the loss network.
        photo: content image, float32 [H, W, 3] in [0, 255], any size.
        style: style image, likewise.
        size: long side of the image being optimised.
        loss_config: layers and weights.
    """

    def __init__(self, vgg: VggFeatures, photo: np.ndarray, style: np.ndarray, size: int, loss_config: LossConfig):
        content = image_io.resize_long_side(photo, size)
        style = image_io.resize_long_side(style, size)
        content_targets = vgg(tf.constant(content[None]), [layer for layer, _ in loss_config.content_layers])
        style_grams = blended_style_grams(vgg, [style], [1.0], [layer for layer, _ in loss_config.style_layers])
        self.shape = content.shape
        self.objective, self.term_names = make_objective(vgg, content.shape, content_targets, style_grams, loss_config)
        self.x0 = tf.constant(content.reshape(-1))
        self.forward_flops = common.vgg_forward_flops(vgg, content.shape[0], content.shape[1], loss_config.all_layers)
        self._evaluate = tf.function(self.objective)
        self.evaluate_seconds(self.x0)  # Traces it and warms the kernels up.

    def evaluate(self, x: tf.Tensor) -> None:
        """One bare loss-and-gradient evaluation at `x`, waited for."""
        for part in self._evaluate(x):
            part.numpy()

    def evaluate_seconds(self, x: tf.Tensor) -> tuple[float, float]:
        """Times one bare evaluation at `x`: ``(wall, cpu)`` seconds."""
        return common.time_call_cpu(lambda: self.evaluate(x))

    def evaluate_numpy(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """Value and gradient at a float64 point, in float64 (for scipy)."""
        value, gradient, _ = self._evaluate(tf.constant(x, tf.float32))
        return float(value), gradient.numpy().astype(np.float64)


def measure_efficiency(problem: Problem, repeats: int, with_peak: bool) -> dict:
    """Bare evaluations at the content image against the conv peak (see `common.against_conv_peak`)."""
    flops = 2 * problem.forward_flops
    figures = common.against_conv_peak(lambda: problem.evaluate(problem.x0), flops, repeats, with_peak)
    return {"vgg_forward_gflop": problem.forward_flops / 1e9, "evaluation_gflop": flops / 1e9, **figures}


def boundaries(iterations: list[int], chunk: int) -> list[int]:
    """Iteration counts at which a run stops to record: every `chunk` and every reported count."""
    return sorted(set(range(chunk, max(iterations) + 1, chunk)) | set(iterations))


def run_in_graph(problem: Problem, configs: dict[str, OptimizerConfig], iterations: list[int], chunk: int,
                 bounds) -> dict:
    """Runs the in-graph optimizers side by side, a chunk of each in turn; returns their trajectories.

    Alternating chunks gives every method the same share of the machine's
    quiet and busy spells, so that their wall times compare fairly. Each
    method's clock counts only its own chunks (see `summarize_run`).
    """
    size, terms = int(problem.x0.shape[0]), len(problem.term_names)
    optimizers = {method: make_optimizer(problem.objective, size, terms, config, bounds)
                  for method, config in configs.items()}
    trajectories, done, stopped = {}, {}, set()
    for optimizer in optimizers.values():
        optimizer.start(problem.x0)
        optimizer.run(tf.constant(1))  # Traces `run` and warms up, off the clock.
    for method, optimizer in optimizers.items():
        wall, cpu = common.time_call_cpu(functools.partial(optimizer.start, problem.x0))
        trajectories[method] = [_point(0, wall, cpu, float(optimizer.value), int(optimizer.evaluations), None)]
        done[method] = 0
    for boundary in boundaries(iterations, chunk):
        for method, optimizer in optimizers.items():
            if method in stopped:
                continue
            trajectory = trajectories[method]
            wall_start, cpu_start = common.clocks()
            done[method] += int(optimizer.run(tf.constant(boundary - done[method])))
            wall_end, cpu_end = common.clocks()
            wall = trajectory[-1]["seconds"] + wall_end - wall_start
            cpu = trajectory[-1]["cpu_seconds"] + cpu_end - cpu_start
            bare = problem.evaluate_seconds(optimizer.x.read_value())
            trajectory.append(_point(done[method], wall, cpu, float(optimizer.value), int(optimizer.evaluations), bare))
            common.log(f"  {method:5s} {done[method]:4d} it  loss {trajectory[-1]['loss']:.6g}  {wall:8.2f} s")
            if bool(optimizer.converged) or done[method] < boundary:
                common.log(f"  {method} stopped after {done[method]} iterations")
                stopped.add(method)
    return trajectories


def run_scipy(problem: Problem, history_size: int, iterations: list[int], chunk: int, bounds) -> list[dict]:
    """Runs scipy's L-BFGS-B on the same objective, held to `bounds` if given; returns its trajectory (see
    `summarize_run`)."""
    counted = {"evaluations": 0, "iterations": 0, "paused_wall": 0.0, "paused_cpu": 0.0}
    stops = set(boundaries(iterations, chunk))

    def value_and_gradient(x):
        counted["evaluations"] += 1
        return problem.evaluate_numpy(x)

    wall_start, cpu_start = common.clocks()
    value, _ = value_and_gradient(problem.x0.numpy().astype(np.float64))
    wall, cpu = common.clocks()
    trajectory = [_point(0, wall - wall_start, cpu - cpu_start, value, counted["evaluations"], None)]

    def callback(intermediate_result):
        counted["iterations"] += 1
        done = counted["iterations"]
        wall, cpu = common.clocks()
        wall, cpu = wall - wall_start - counted["paused_wall"], cpu - cpu_start - counted["paused_cpu"]
        bare = None
        if done in stops:
            bare = problem.evaluate_seconds(tf.constant(intermediate_result.x, tf.float32))
            counted["paused_wall"] += bare[0]
            counted["paused_cpu"] += bare[1]
            common.log(f"  scipy {done:4d} it  loss {intermediate_result.fun:.6g}  {wall:8.2f} s")
        trajectory.append(_point(done, wall, cpu, float(intermediate_result.fun), counted["evaluations"], bare))

    result = scipy.optimize.minimize(
        value_and_gradient, problem.x0.numpy().astype(np.float64), jac=True, method="L-BFGS-B", callback=callback,
        bounds=None if bounds is None else scipy.optimize.Bounds(*bounds),
        options={"maxiter": max(iterations), "maxcor": history_size, "ftol": 0.0, "gtol": 0.0,
                 "maxfun": 20 * max(iterations)},
    )
    common.log(f"  scipy: {result.message}")
    return trajectory


def _point(iteration: int, wall: float, cpu: float, loss: float, evaluations: int, bare) -> dict:
    return {"iteration": iteration, "seconds": wall, "cpu_seconds": cpu, "loss": loss, "evaluations": evaluations,
            "bare": bare}


def summarize_run(trajectory: list[dict], iterations: list[int], chunk: int, bare: list | None = None) -> dict:
    """Loss at each reported count, per-iteration cost, and the points recorded every `chunk` iterations.

    A trajectory is a list of points ``{iteration, seconds, cpu_seconds, loss,
    evaluations, bare}``: ``seconds`` and ``cpu_seconds`` are the run's clocks
    (its first evaluation included, bare evaluations excluded), ``bare`` the
    ``(wall, cpu)`` time of a bare evaluation taken at that point, or None.
    ``iteration_cost`` is the mean iteration time over the mean bare evaluation
    time; ``iteration_cost_cpu`` the same in CPU time. `bare`, when given,
    replaces the run's own bare evaluation times (runs that alternated pool theirs).
    """
    first, last = trajectory[0], trajectory[-1]
    by_iteration = {point["iteration"]: point for point in trajectory}
    ran = max(last["iteration"], 1)
    bare = bare if bare is not None else [point["bare"] for point in trajectory if point["bare"] is not None]
    bare = np.array(bare).reshape(-1, 2)
    bare_wall, bare_cpu = bare.mean(axis=0) if len(bare) else (float("nan"), float("nan"))
    iteration_wall = (last["seconds"] - first["seconds"]) / ran
    iteration_cpu = (last["cpu_seconds"] - first["cpu_seconds"]) / ran
    stops = set(boundaries(iterations, chunk)) | {0}
    return {
        "loss": {str(n): by_iteration[n]["loss"] if n in by_iteration else None for n in iterations},
        "iterations_run": last["iteration"],
        "final_loss": last["loss"],
        "seconds_total": last["seconds"],
        "cpu_seconds_total": last["cpu_seconds"],
        "seconds_per_iteration": iteration_wall,
        "evaluations_per_iteration": (last["evaluations"] - first["evaluations"]) / ran,
        "bare_evaluation_seconds": float(bare_wall),
        "iteration_cost": iteration_wall / bare_wall,
        "cpu_seconds_per_iteration": iteration_cpu,
        "bare_evaluation_cpu_seconds": float(bare_cpu),
        "iteration_cost_cpu": iteration_cpu / bare_cpu,
        "trajectory": [[p["iteration"], round(p["seconds"], 4), p["loss"]] for p in trajectory
                       if p["iteration"] in stops],
        "_points": trajectory,
    }


def first_reaching(trajectory: list[dict], loss: float) -> dict | None:
    """The first recorded point with a loss at or below `loss` (None if never)."""
    return next((point for point in trajectory if point["loss"] <= loss), None)


def check_targets(results: dict, last: int) -> dict:
    """Evaluates the three targets at every size that has the needed figures.

    Time to Adam's final loss is compared three ways: by the wall clock (the
    target), in bare evaluations timed alongside each run (``..._evaluations``,
    which cancels out a machine busier during one run than during another),
    and by CPU time; ``met`` follows the wall clock.
    """
    ordering, overhead, efficiency = {}, {}, {}
    for size, figures in results.items():
        runs = figures.get("runs", {})
        adam = runs.get("adam")
        if adam and adam["iterations_run"] == last:
            adam_final = adam["final_loss"]
            ordering[size] = {
                "adam_loss": adam_final,
                "adam_seconds": adam["seconds_total"],
                "adam_evaluations": adam["seconds_total"] / adam["bare_evaluation_seconds"],
                "adam_cpu_seconds": adam["cpu_seconds_total"],
            }
            for method in ("lbfgs", "scipy"):
                if method in runs:
                    run = runs[method]
                    reach = first_reaching(run["_points"], adam_final) or NEVER_REACHED
                    final, seconds = run["loss"][str(last)], reach["seconds"]
                    ordering[size][method] = {
                        "loss": final,
                        "below_adam_percent": 100 * (1 - run["final_loss"] / adam_final),
                        "iterations_to_adam_loss": reach["iteration"],
                        "seconds_to_adam_loss": seconds,
                        "evaluations_to_adam_loss": seconds and seconds / run["bare_evaluation_seconds"],
                        "cpu_seconds_to_adam_loss": reach["cpu_seconds"],
                        "met": bool(final is not None and final < adam_final and seconds is not None
                                    and seconds < adam["seconds_total"]),
                    }
        for method in ("lbfgs", "scipy"):
            if method in runs:
                cost = runs[method]["iteration_cost"]
                overhead.setdefault(size, {})[method] = {
                    "iteration_cost": cost, "iteration_cost_cpu": runs[method]["iteration_cost_cpu"],
                    "evaluations_per_iteration": runs[method]["evaluations_per_iteration"],
                    "met": cost <= TARGET_ITERATION_COST,
                }
        fraction = figures["evaluation"].get("fraction_of_peak")
        if fraction is not None and int(size) == TARGET_PEAK_SIZE:
            efficiency[size] = {
                "fraction_of_peak": fraction, "fraction_of_peak_cpu": figures["evaluation"]["fraction_of_peak_cpu"],
                "met": fraction >= TARGET_PEAK_FRACTION,
            }
    return {
        f"lbfgs_{last}_below_adam_{last}_and_faster_to_its_loss": ordering,
        f"lbfgs_iteration_at_most_{TARGET_ITERATION_COST:g}x_bare_evaluation": overhead,
        f"evaluation_at_least_{TARGET_PEAK_FRACTION:g}_of_conv_peak_at_{TARGET_PEAK_SIZE}": efficiency,
    }


def run_optimizers(problem: Problem, methods: list[str], args: argparse.Namespace, iterations: list[int]) -> dict:
    """Runs `methods` at one size: the in-graph ones alternating, then scipy; returns `summarize_run` of each."""
    configs = {
        method: OptimizerConfig(method=method, history_size=args.history_size,
                                learning_rate=args.learning_rate, tolerance=0.0)
        for method in methods if method != "scipy"
    }
    bounds = None if args.unbounded else image_io.PIXEL_RANGE
    trajectories = {}
    if configs:
        common.log(f"  {' and '.join(configs)}, alternating")
        trajectories.update(run_in_graph(problem, configs, iterations, args.chunk, bounds))
    if "scipy" in methods:
        common.log("  scipy L-BFGS-B")
        trajectories["scipy"] = run_scipy(problem, args.history_size, iterations, args.chunk, bounds)
    pooled = [point["bare"] for method in configs for point in trajectories[method] if point["bare"] is not None]
    return {
        method: summarize_run(trajectory, iterations, args.chunk, pooled if method in configs else None)
        for method, trajectory in trajectories.items()
    }


def main(argv=None) -> dict:
    """Runs the benchmark, prints the JSON line and returns the figures."""
    args = parse_args(argv)
    iterations = sorted(set(args.iterations))
    photo, style = image_io.load_image(args.photo), image_io.load_image(args.style)
    loss_config = LossConfig.gatys()
    vgg = VggFeatures(pooling=args.pooling)
    methods = [m for m in METHODS if not getattr(args, f"no_{m}")]
    results = {}
    for size in args.sizes:
        common.log(f"size {size}: building the objective")
        problem = Problem(vgg, photo, style, size, loss_config)
        figures = {"image_shape": list(problem.shape)}
        figures["evaluation"] = measure_efficiency(problem, args.repeats, not args.no_peak)
        evaluation = figures["evaluation"]
        common.log(f"  bare evaluation {evaluation['seconds']['median']:.4f} s, {evaluation['gflops']:.1f} GFLOP/s"
                   + (f" = {evaluation['fraction_of_peak']:.1%} of {evaluation['peak_gflops']:.1f}"
                      if "fraction_of_peak" in evaluation else ""))
        if size in args.optimize_sizes:
            figures["runs"] = run_optimizers(problem, methods, args, iterations)
        results[str(size)] = figures
    output = {
        "benchmark": "gatys",
        "settings": {
            "photo": str(args.photo), "style": str(args.style), "sizes": args.sizes,
            "optimize_sizes": args.optimize_sizes, "iterations": iterations, "methods": methods,
            "adam_learning_rate": args.learning_rate, "history_size": args.history_size, "pooling": args.pooling,
            "chunk": args.chunk, "repeats": args.repeats, "loss": "LossConfig.gatys()", "bounded": not args.unbounded,
        },
        "environment": common.environment(),
        "targets": check_targets(results, max(iterations)),
        "sizes": results,
    }
    for figures in results.values():
        for run in figures.get("runs", {}).values():
            run.pop("_points")
    common.print_json(output)
    return output


if __name__ == "__main__":
    main()
