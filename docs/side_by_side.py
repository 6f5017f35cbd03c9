"""Lays images side by side at one height for the README: photo, painting, result.

Usage: python docs/side_by_side.py OUT.jpg IMAGE IMAGE ... [--height 384]
"""

import argparse

from PIL import Image

GAP = 6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out")
    parser.add_argument("images", nargs="+")
    parser.add_argument("--height", type=int, default=384, help="height of the row, in pixels (default: 384)")
    args = parser.parse_args()
    images = []
    for path in args.images:
        image = Image.open(path).convert("RGB")
        images.append(image.resize((round(image.width * args.height / image.height), args.height), Image.LANCZOS))
    row = Image.new("RGB", (sum(image.width for image in images) + GAP * (len(images) - 1), args.height), "white")
    left = 0
    for image in images:
        row.paste(image, (left, 0))
        left += image.width + GAP
    row.save(args.out, quality=88)


if __name__ == "__main__":
    main()
