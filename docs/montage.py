"""Lays out stylized images as a grid for the README: one row per photo, one column per model.

Usage: python docs/montage.py OUT.jpg --photos P1 P2 ... --models M1 M2 ... --images-dir DIR
where DIR holds ``<photo stem>__<model>.png`` made by ``impasto stylize --method fast``.
"""

import argparse
from pathlib import Path

from PIL import Image

CELL = 240


def _cell(path: Path) -> Image.Image:
    image = Image.open(path).convert("RGB")
    image.thumbnail((CELL, CELL), Image.LANCZOS)
    canvas = Image.new("RGB", (CELL, CELL), "white")
    canvas.paste(image, ((CELL - image.width) // 2, (CELL - image.height) // 2))
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out")
    parser.add_argument("--photos", nargs="+", required=True)
    parser.add_argument("--styles", nargs="+", required=True, help="style images, in model order (header row)")
    parser.add_argument("--models", nargs="+", required=True)
    parser.add_argument("--images-dir", required=True)
    args = parser.parse_args()
    gap = 6
    columns, rows = 1 + len(args.models), 1 + len(args.photos)
    grid = Image.new("RGB", (columns * CELL + (columns - 1) * gap, rows * CELL + (rows - 1) * gap), "white")
    for column, style in enumerate(args.styles, start=1):
        grid.paste(_cell(Path(style)), (column * (CELL + gap), 0))
    for row, photo in enumerate(args.photos, start=1):
        grid.paste(_cell(Path(photo)), (0, row * (CELL + gap)))
        for column, model in enumerate(args.models, start=1):
            stylized = Path(args.images_dir) / f"{Path(photo).stem}__{model}.png"
            grid.paste(_cell(stylized), (column * (CELL + gap), row * (CELL + gap)))
    grid.save(args.out, quality=88)


if __name__ == "__main__":
    main()
