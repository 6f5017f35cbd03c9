"""When an image is tiled, and how large its tiles are, for both methods (no TensorFlow here).

The tiles themselves are cut and put back together by `impasto.model.tile_grid`.
"""

from dataclasses import dataclass

from impasto.model.errors import InvalidInputError

DEFAULT_TILE_PIXELS = 2048 * 2048
"""Images with more pixels than this are tiled unless told otherwise (feed-forward networks)."""

GATYS_TILE_PIXELS = 1024 * 1024
"""Optimization pyramid stages with more pixels than this evaluate the objective tile by tile by default."""

DEFAULT_TILE_SIZE = 512
"""Side, in pixels, of each tile's core (a multiple of 4); each pass adds its halo."""


@dataclass(frozen=True)
class Tiling:
    """When and how images are tiled.

    Attributes:
        tile_pixels: tile images with more pixels than this; None: never (`--no-tile`),
            0: always (`--tile SIZE`).
        tile_size: core side of a tile, in pixels (a multiple of 4, at least 16).
    """

    tile_pixels: int | None = DEFAULT_TILE_PIXELS
    tile_size: int = DEFAULT_TILE_SIZE

    def __post_init__(self):
        if self.tile_size < 16 or self.tile_size % 4:
            raise InvalidInputError(f"tile size must be a multiple of 4 and at least 16 pixels, not {self.tile_size}")
        if self.tile_pixels is not None and self.tile_pixels < 0:
            raise InvalidInputError(f"tile pixel threshold must not be negative, not {self.tile_pixels}")

    @classmethod
    def never(cls) -> "Tiling":
        return cls(tile_pixels=None)

    @classmethod
    def always(cls, tile_size: int = DEFAULT_TILE_SIZE) -> "Tiling":
        return cls(tile_pixels=0, tile_size=tile_size)

    def applies_to(self, height: int, width: int) -> bool:
        """Whether an image of this size is tiled."""
        return self.tile_pixels is not None and height * width > self.tile_pixels
