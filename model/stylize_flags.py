"""`impasto stylize`: optimization-based (Gatys) or feed-forward (Johnson) stylization of one image.

Only the flags live here, with nothing that imports TensorFlow, so that `impasto stylize --help` and flag
errors answer at once; `impasto.model.cli` runs the command.
"""

import argparse

from impasto.model import image_io
from impasto.model.tiling import DEFAULT_TILE_PIXELS, GATYS_TILE_PIXELS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="impasto stylize", description=__doc__.splitlines()[0])
    parser.add_argument("content", nargs="?", help="the content photo")
    parser.add_argument("--out", help="output image (.png, .jpg, .webp, .bmp); written only on success")
    parser.add_argument("--method", choices=("optimize", "fast"), help="default: fast with --model, else optimize")
    parser.add_argument("--list-models", action="store_true", help="print the bundled model names and exit")
    parser.add_argument("--max-pixels", type=int, default=image_io.DEFAULT_MAX_PIXELS,
                        help="refuse input images whose header claims more pixels (default %(default)s)")
    fast = parser.add_argument_group("fast (feed-forward)")
    fast.add_argument("--model", help="bundled model name, training run directory, .npz bundle, or a .tflite file "
                                      "(run in the LiteRT runtime; see impasto export --format tflite)")
    fast.add_argument("--strength", type=float, default=1.0, help="0..1: blend from the content to the full style")
    fast.add_argument("--engine", default="auto",
                      help="what runs a network that is not a .tflite file: auto (default: the fastest on this CPU, "
                           "timed once and cached), tf (TensorFlow, oneDNN), tf_xla (XLA) or litert (XNNPACK)")
    tiling = parser.add_argument_group("tiling (large images; the result is the same as untiled)")
    tiles = tiling.add_mutually_exclusive_group()
    tiles.add_argument("--tile", type=int, metavar="SIZE",
                       help="always run tile by tile, SIZE-pixel tiles (fast: a multiple of 4; optimize: of 16)")
    tiles.add_argument("--no-tile", action="store_true", help="never tile, however large the image")
    tiling.add_argument("--tile-pixels", type=int,
                        help=f"tile images (optimize: pyramid stages) with more pixels than this (default "
                             f"{DEFAULT_TILE_PIXELS} for fast, {GATYS_TILE_PIXELS} for optimize)")
    opt = parser.add_argument_group("optimize (Gatys et al.)")
    opt.add_argument("--style", action="append", default=[], help="style image; repeat for several")
    opt.add_argument("--style-weights", help="blend weights, one per --style, e.g. 0.7,0.3")
    opt.add_argument("--size", type=int, help="output long side (optimize: default 512; fast: default the photo's)")
    opt.add_argument("--iterations", type=int, default=500, help="iterations per pyramid stage")
    opt.add_argument("--optimizer", choices=("lbfgs", "adam"), default="lbfgs")
    opt.add_argument("--lr", type=float, default=10.0, help="Adam learning rate, in pixel units")
    opt.add_argument("--tolerance", type=float, default=1e-7,
                     help="stop when the loss changes relatively less than this")
    opt.add_argument("--pooling", choices=("avg", "max"), default="avg")
    opt.add_argument("--init", default="content", help="content, noise, or an image file")
    opt.add_argument("--style-scale", type=float, default=1.0)
    opt.add_argument("--content-weight", type=float)
    opt.add_argument("--style-weight", type=float)
    opt.add_argument("--tv-weight", type=float)
    opt.add_argument("--content-layers", help="e.g. block4_conv2 or block4_conv2:1,block5_conv2:0.5")
    opt.add_argument("--style-layers", help="e.g. block1_conv1,block2_conv1:0.5")
    opt.add_argument("--scales", type=int, default=1, help="pyramid stages (3 = size/4, size/2, size)")
    opt.add_argument("--seed", type=int, default=0)
    opt.add_argument("--save-every", type=int, default=0, help="also write OUT_<iteration> every N iterations")
    opt.add_argument("--logdir", help="TensorBoard log directory for loss terms and the image")
    opt.add_argument("--vgg-weights", help="imagenet (default), torchvision, or a Keras vgg16/vgg19 notop .h5")
    parser.add_argument("--preserve-color", action="store_true", help="keep the content's colours (luminance-only)")
    parser.add_argument("--no-progress", action="store_true")
    return parser
