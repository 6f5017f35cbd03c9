"""impasto.model: the two stylization methods and what they share.

- `lossnet`: the VGG loss network's weights, its features and the perceptual losses.
- `optimize`: optimization-based stylization (Gatys et al.) and its in-graph optimizers.
- `feedforward`: the feed-forward network (Johnson et al.), running it, and finding trained models.
- Shared by every package: `image_io` (the pixel contract), `color`, `tiling`, `tile_grid`, `errors`, `files`,
  `cli_errors`; `stylize_flags` and `cli` are `impasto stylize`.
"""
