"""bench/recipes.py gives each variant the reference's compute, or for another width or dtype its wall time."""

import sys

from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "bench"))
import recipes  # noqa: E402  (bench/recipes.py)


def test_variants_get_the_reference_pixels_or_for_another_width_or_dtype_its_wall_time():
    assert recipes.equal_compute_steps(recipes.VARIANTS["cosine_1e-3"], 100) == 100
    assert recipes.equal_compute_steps(recipes.VARIANTS["cosine_1e-3_256px"], 100) == 56
    assert recipes.equal_compute_steps(recipes.VARIANTS["cosine_1e-3_batch8"], 100) == 50
    assert recipes.equal_compute_steps(recipes.VARIANTS["cosine_1e-3_batch8"], 100, width_step_cost=2.0) == 50
    assert recipes.equal_compute_steps(recipes.VARIANTS["cosine_1e-3_full_width"], 100, width_step_cost=1.39) == 72
    assert recipes.equal_compute_steps(recipes.VARIANTS["cosine_1e-3_full_width"], 100) == 100
    bf16 = recipes.VARIANTS["cosine_1e-3_full_width_bf16"]
    assert recipes.equal_compute_steps(bf16, 100, width_step_cost=1.39) == 72
    assert recipes.equal_compute_steps(bf16, 100, bf16_step_cost=0.64) == 156
    assert recipes.equal_compute_steps(bf16, 100, width_step_cost=1.39, bf16_step_cost=0.64) == 112
    assert recipes.equal_compute_steps(recipes.VARIANTS["cosine_1e-3_full_width"], 100, bf16_step_cost=0.64) == 100
