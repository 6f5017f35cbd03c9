"""The VGG loss network: images in, ``{layer_name: activation}`` out.

Layer names follow Keras: ``block{b}_conv{c}`` is the ReLU output of that
convolution. VGG16 and VGG19 are the same code; which one is built follows
from the weights. Preprocessing (Caffe: BGR and ImageNet mean subtraction, or
torchvision: RGB in [0, 1] normalised by mean and std) is part of the network,
so callers always pass images in the pixel contract (RGB float32 [0, 255]).
"""

import numpy as np
import tensorflow as tf

from impasto.model.lossnet.weights import CAFFE, VggWeights, load_vgg_weights

_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_TORCH_MEAN_RGB = (0.485, 0.456, 0.406)
_TORCH_STD_RGB = (0.229, 0.224, 0.225)
POOLING_MODES = ("max", "avg")


def layer_order(name: str) -> tuple[int, int]:
    """Sort key of a Keras VGG layer name: ``"block3_conv2" -> (3, 2)``."""
    block, conv = name.removeprefix("block").split("_conv")
    return int(block), int(conv)


class VggFeatures(tf.Module):
    """A frozen VGG conv base that returns the activations of the requested layers.

    Args:
        weights: conv weights; None loads the default ImageNet VGG16.
        pooling: ``"max"`` (as trained) or ``"avg"`` (Gatys et al.'s choice for synthesis).
        dtype: compute dtype (float32, or float16/bfloat16 for mixed precision).
    """

    def __init__(self, weights: VggWeights | None = None, pooling: str = "max", dtype=tf.float32):
        super().__init__(name="vgg_features")
        if pooling not in POOLING_MODES:
            raise ValueError(f"pooling must be one of {POOLING_MODES}, not {pooling!r}")
        weights = weights or load_vgg_weights()
        self.pooling = pooling
        self.preprocessing = weights.preprocessing
        self.compute_dtype = tf.as_dtype(dtype)
        self.layer_names = tuple(weights.layers)
        numpy_dtype = self.compute_dtype.as_numpy_dtype
        kernels = [np.asarray(kernel, np.float32) for kernel, _ in weights.layers.values()]
        kernels[0] = self._first_kernel(kernels[0])
        # Numpy, not tf.Variable: each trace embeds the weights as graph constants,
        # and oneDNN reorders a constant filter into its blocked layout once and
        # keeps it (`is_filter_const`) instead of on every forward and backward
        # convolution (docs/benchmarks.md has what that saves a Gatys evaluation).
        self._kernels = [kernel.astype(numpy_dtype) for kernel in kernels]
        self._biases = [np.asarray(bias, np.float32).astype(numpy_dtype) for _, bias in weights.layers.values()]

    @property
    def kernel_shapes(self) -> dict[str, tuple[int, int, int, int]]:
        """``{layer: (kernel height, kernel width, channels in, channels out)}``, in network order."""
        return {name: tuple(kernel.shape) for name, kernel in zip(self.layer_names, self._kernels)}

    def receptive_radius(self, layer: str) -> int:
        """Input pixels, to each side, that can reach one activation of `layer` (3x3 convs, 2x2 pools)."""
        deepest = layer_order(layer)
        convs = sum(2 ** (layer_order(name)[0] - 1) for name in self.layer_names if layer_order(name) <= deepest)
        pools = sum(2 ** (block - 2) for block in range(2, deepest[0] + 1))
        return convs + pools

    def preprocess(self, images: tf.Tensor) -> tf.Tensor:
        """RGB float32 [0, 255] [N, H, W, 3] -> the network's input space, same shape."""
        if self.preprocessing == CAFFE:
            return images[..., ::-1] - tf.constant(_CAFFE_MEAN_BGR, images.dtype)
        return (images / 255.0 - tf.constant(_TORCH_MEAN_RGB, images.dtype)) / tf.constant(_TORCH_STD_RGB, images.dtype)

    def _input_affine(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`preprocess` per input (RGB) channel ``c``: ``net[..., order[c]] = (x[..., c] - offset[c]) * scale[c]``."""
        if self.preprocessing == CAFFE:
            return np.array([2, 1, 0]), np.array(_CAFFE_MEAN_BGR[::-1]), np.ones(3)
        return np.arange(3), 255.0 * np.array(_TORCH_MEAN_RGB), 1.0 / (255.0 * np.array(_TORCH_STD_RGB))

    def _first_kernel(self, kernel: np.ndarray) -> np.ndarray:
        """The first conv's kernel with the preprocessing's channel order and scale folded in.

        Convolving ``images - offset`` with it equals convolving ``preprocess(images)``
        with ``kernel``, zero padding included (a padded zero is zero in both
        spaces), and saves the channel flip, whose autodiff gradient is a slow
        ``StridedSliceGrad`` over the whole image.
        """
        order, _, scale = self._input_affine()
        return (kernel[:, :, order, :] * scale.reshape(1, 1, 3, 1)).astype(np.float32)

    def __call__(self, images: tf.Tensor, layers) -> dict[str, tf.Tensor]:
        """Runs the network as far as the deepest requested layer.

        Args:
            images: float32 [N, H, W, 3], RGB in [0, 255].
            layers: iterable of layer names, e.g. ``("block1_conv1", "block4_conv2")``.

        Returns:
            ``{layer: activation [N, H / 2**(b-1), W / 2**(b-1), C]}`` in the compute dtype.
        """
        wanted = set(layers)
        unknown = wanted.difference(self.layer_names)
        if unknown:
            raise ValueError(f"unknown VGG layers {sorted(unknown)}; this network has {list(self.layer_names)}")
        deepest = max(wanted, key=layer_order)
        features = {}
        _, offset, _ = self._input_affine()
        x = tf.cast(tf.cast(images, tf.float32) - tf.constant(offset, tf.float32), self.compute_dtype)
        previous_block = 1
        for name, kernel, bias in zip(self.layer_names, self._kernels, self._biases):
            block = layer_order(name)[0]
            if block != previous_block:
                x = self._pool(x)
                previous_block = block
            x = tf.nn.conv2d(x, tf.constant(kernel), strides=1, padding="SAME")
            x = tf.nn.relu(tf.nn.bias_add(x, tf.constant(bias)))
            if name in wanted:
                features[name] = x
            if name == deepest:
                break
        return features

    def _pool(self, x: tf.Tensor) -> tf.Tensor:
        pool = tf.nn.max_pool2d if self.pooling == "max" else tf.nn.avg_pool2d
        return pool(x, ksize=2, strides=2, padding="SAME")


def layer_stride(layer: str) -> int:
    """Input pixels per activation of `layer` along each axis: ``2 ** (block - 1)``."""
    return 2 ** (layer_order(layer)[0] - 1)
