"""Optimization-based stylization (Gatys et al.): the method (`gatys`), its objective evaluated tile by tile
(`tiled_objective`) and the in-graph optimizers (`optimizers`: L-BFGS, Adam)."""
