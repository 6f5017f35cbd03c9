"""The flags of `impasto export` and its usage text (`DESCRIPTION`).

Only the flags live here, with nothing that imports TensorFlow, so that `impasto export --help` and flag
errors answer at once; `impasto.export.cli` runs the command.
"""

import argparse
from pathlib import Path

from impasto.export.litert_variants import VARIANTS
from impasto.export.options import CPU_TARGET, DEFAULT_WARMUP_SIZES, TARGETS
from impasto.export.tfserving_config import EXPORT_BATCHING
from impasto.model.image_io import DEFAULT_MAX_PIXELS
from impasto.model.tiling import DEFAULT_TILE_PIXELS, DEFAULT_TILE_SIZE

DESCRIPTION = """`impasto export`: a trained model -> a TensorFlow Serving SavedModel version (plus the server's config
files), or LiteRT (TensorFlow Lite) files for phones and small devices.

    impasto export RUN_DIR_OR_BUNDLED_NAME --model-base MODELS_DIR --name NAME [--version N]
        [--target cpu|gpu] [--warmup-sizes 256x256,512x512] [--max-side 2048]
        [--tile-pixels N | --no-tile] [--tile-size 512] [--tflite-model]

writes MODELS_DIR/NAME/<version>/ atomically and rewrites MODELS_DIR/models.config,
batching_parameters.txt and monitoring.config. See docs/serving.md.

    impasto export RUN_DIR_OR_BUNDLED_NAME --format tflite --out DIR [--name NAME]
        [--variants float32,float16,int8,int8-full] [--calibration-photos PHOTO_DIR]

writes DIR/NAME-VARIANT.tflite and DIR/NAME-VARIANT.json for each variant that meets
its quality bound against the TensorFlow network (and DIR/NAME-VARIANT.tiles.tflite, its
stages for seam-free tiling of large images, but for int8-full). See docs/mobile.md.
"""

DEFAULT_CALIBRATION_PHOTOS = Path(__file__).resolve().parents[1] / "data" / "samples" / "photos"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="impasto export", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="bundled model name, training run directory or .npz bundle")
    parser.add_argument("--format", choices=("savedmodel", "tflite"), default="savedmodel",
                        help="savedmodel (TensorFlow Serving, the default) or tflite (LiteRT)")
    parser.add_argument("--model-base", help="savedmodel: folder of served models (MODELS_DIR); required")
    parser.add_argument("--name", help="model name: savedmodel: the folder under MODELS_DIR and the TF Serving name "
                                       "(required); tflite: the files' name (default: the style)")
    litert_flags = parser.add_argument_group("tflite (LiteRT)")
    litert_flags.add_argument("--out", help="folder to write the .tflite files and their .json side files to")
    litert_flags.add_argument("--variants", default=",".join(VARIANTS),
                              help="comma-separated, from %(default)s (default: all)")
    litert_flags.add_argument("--calibration-photos", default=str(DEFAULT_CALIBRATION_PHOTOS),
                              help="photos to calibrate int8-full on and to check every variant against the "
                                   "TensorFlow network on (default: the sample photos, data/samples/photos)")
    parser.add_argument("--version", type=int, help="version number (default: one more than the highest)")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--target", choices=TARGETS, default=CPU_TARGET,
                        help="cpu (default): no XLA, runs on any tensorflow_model_server; gpu: the network "
                             "XLA-compiled in serving_default (serve with --xla_gpu_compilation_enabled=true)")
    target.add_argument("--no-xla", dest="target", action="store_const", const=CPU_TARGET,
                        help="same as --target cpu")
    parser.add_argument("--tflite-model", action="store_true",
                        help="savedmodel, cpu target: also write model.tflite (the network's XNNPACK form, signature "
                             "stylize_tensor) into the version, for CPUs where LiteRT runs it fastest; servers "
                             "started with --prefer_tflite_model serve it (docs/serving.md)")
    parser.add_argument("--warmup-sizes", default=",".join(f"{h}x{w}" for h, w in DEFAULT_WARMUP_SIZES),
                        help="HEIGHTxWIDTH,... of the warmup requests the server replays at load "
                             "(default %(default)s; '' for none)")
    parser.add_argument("--max-side", type=int, default=2048,
                        help="largest bucket side; longer inputs are tiled (default 2048)")
    tiles = parser.add_mutually_exclusive_group()
    tiles.add_argument("--tile-pixels", type=int, default=DEFAULT_TILE_PIXELS,
                       help="inputs with more pixels are tiled, seam-free, at their own size (default %(default)s)")
    tiles.add_argument("--no-tile", action="store_true",
                       help="never tile: scale inputs longer than --max-side down to it and the result back up")
    parser.add_argument("--tile-size", type=int, default=DEFAULT_TILE_SIZE, help="tile side (default %(default)s)")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help="refuse images whose header claims more pixels (default %(default)s)")
    parser.add_argument("--serving-base-path",
                        help="where the server sees MODELS_DIR, for models.config (e.g. /models in the container); "
                             "default MODELS_DIR's absolute path")
    batching = parser.add_argument_group(
        "batching_parameters.txt", "Given any of these, the file is rewritten from them (defaults for the rest); "
        "given none, an existing file is kept and a missing one gets the defaults.")
    defaults = EXPORT_BATCHING
    for flag, default in (("--max-batch-size", defaults.max_batch_size),
                          ("--batch-timeout-micros", defaults.batch_timeout_micros),
                          ("--num-batch-threads", defaults.num_batch_threads),
                          ("--max-enqueued-batches", defaults.max_enqueued_batches)):
        batching.add_argument(flag, type=int, help=f"default {default}")
    batching.add_argument("--allowed-batch-sizes", help="e.g. 1,2,4,8 ending at --max-batch-size (default none)")
    return parser
