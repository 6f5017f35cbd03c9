"""The README's tiling picture: a crop across a tile corner of a large tiled result, beside hand tiling.

Left: the crop of `impasto`'s tiled output (a PNG that ``bench/tiling.py --save-dir``
wrote, e.g. tiled_4096.png); right: the same window when each tile is stylized on
its own (own instance-norm statistics, no halo), recomputed here from the same test
card the bench made. The crop is centred on the corner where four tiles meet.

Example:
    .venv/bin/python docs/tile_crop.py /tmp/tiling_out/tiled_4096.png docs/images/tiled_4096_crop.jpg
"""

import argparse
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "bench"))

import tiling as tiling_bench  # noqa: E402  (bench/tiling.py: the test card)

from impasto.model import image_io  # noqa: E402
from impasto.model.feedforward.bundles import load_network  # noqa: E402
from impasto.model.feedforward.stylizer import FastStylizer  # noqa: E402
from impasto.model.tiling import Tiling  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tiled", type=Path, help="tiled result PNG from bench/tiling.py --save-dir")
    parser.add_argument("out", type=Path, help="the picture to write")
    parser.add_argument("--photo", type=Path,
                        default=REPO_ROOT / "data/samples/photos/gcompris_chateau_de_chenonceau.jpg")
    parser.add_argument("--model", default="starry_night")
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--crop", type=int, default=384, help="side of the crop")
    args = parser.parse_args()

    tiled = image_io.load_image(args.tiled, max_pixels=1 << 30)
    size = tiled.shape[0]
    corner = (size // 2) // args.tile * args.tile  # A corner where four tiles meet.
    window = slice(corner - args.crop // 2, corner + args.crop // 2)

    card = tiling_bench.test_card(args.photo, size)
    stylizer = FastStylizer(load_network(args.model)[0], tiling=Tiling.never())
    by_hand = np.empty([2 * args.tile, 2 * args.tile, 3], np.float32)
    for row in range(2):
        for column in range(2):
            top, left = corner + (row - 1) * args.tile, corner + (column - 1) * args.tile
            by_hand[row * args.tile:(row + 1) * args.tile, column * args.tile:(column + 1) * args.tile] = \
                stylizer.stylize(card[top:top + args.tile, left:left + args.tile])
    hand_window = slice(args.tile - args.crop // 2, args.tile + args.crop // 2)
    gap = np.full([args.crop, 8, 3], 255.0, np.float32)
    picture = np.concatenate([tiled[window, window], gap, by_hand[hand_window, hand_window]], axis=1)
    image_io.save_image(picture, args.out)
    print(f"wrote {args.out}: {size} px result, crop {args.crop} px around the tile corner at ({corner}, {corner})")


if __name__ == "__main__":
    main()
