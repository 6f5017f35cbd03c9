"""The plain transformer network as the ONNX graph a PyTorch user would export, for bench/speed.py's peer.

pytorch/examples ``fast_neural_style`` writes Johnson et al.'s network with ``ReflectionPad2d``,
``Conv2d``, ``InstanceNorm2d(affine=True)``, ``ReLU`` and ``interpolate(mode="nearest")``;
``torch.onnx.export`` turns those into the ONNX ops ``Pad`` (reflect), ``Conv``,
``InstanceNormalization``, ``Relu`` and ``Resize`` (nearest), NCHW. This module writes that graph
directly from impasto's weights (`TransformerNet.weights_dict()`), so the ONNX Runtime peer runs
the network a user of ONNX Runtime would run, with no PyTorch needed; impasto's own pixel
contract (NHWC float RGB in [0, 255] in and out, ``255 * sigmoid`` at the end) is kept by a
transpose and a scale at each end. tests/test_bench_peers.py holds it equal to
`ReferenceTransformer`.

Unlike `ReferenceTransformer`, it takes sides that are multiples of 4 only (the bench's sizes):
the reference's edge padding of other sizes is not part of the peer.
"""

import numpy as np

OPSET = 17
INPUT_NAME, OUTPUT_NAME = "images", "stylized"


class _GraphBuilder:
    """Collects ONNX nodes and initializers under unique names."""

    def __init__(self, weights: dict):
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.weights, self.nodes, self.initializers, self.count = weights, [], [], 0

    def constant(self, name: str, value) -> str:
        self.initializers.append(self.numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], **attributes) -> str:
        self.count += 1
        output = f"{op.lower()}_{self.count}"
        self.nodes.append(self.helper.make_node(op, inputs, [output], **attributes))
        return output

    def conv_layer(self, x: str, prefix: str, stride: int = 1, normalize: bool = True, relu: bool = True) -> str:
        """ReflectionPad2d(k // 2), Conv2d, then InstanceNorm2d(affine) and ReLU as configured."""
        kernel = self.weights[f"{prefix}/kernel"]  # [k, k, C_in, C_out]
        size, pad = kernel.shape[0], kernel.shape[0] // 2
        pads = self.constant(f"{prefix}/pads", np.array([0, 0, pad, pad, 0, 0, pad, pad], np.int64))
        x = self.node("Pad", [x, pads], mode="reflect")
        conv_weight = self.constant(f"{prefix}/weight", np.ascontiguousarray(kernel.transpose(3, 2, 0, 1), np.float32))
        conv_bias = self.constant(f"{prefix}/bias", np.asarray(self.weights[f"{prefix}/bias"], np.float32))
        x = self.node("Conv", [x, conv_weight, conv_bias], kernel_shape=[size, size], strides=[stride, stride])
        if normalize:
            scale = self.constant(f"{prefix}/scale", np.asarray(self.weights[f"{prefix}/scale"], np.float32))
            offset = self.constant(f"{prefix}/offset", np.asarray(self.weights[f"{prefix}/offset"], np.float32))
            x = self.node("InstanceNormalization", [x, scale, offset], epsilon=1e-5)
        return self.node("Relu", [x]) if relu else x


def plain_onnx_model(weights: dict):
    """An ``onnx.ModelProto`` of the network of `weights`: float32 [1, H, W, 3] in [0, 255] -> the same."""
    from onnx import TensorProto, checker, helper

    from impasto.model.feedforward.instance_norm import EPSILON
    from impasto.model.feedforward.layout import residual_block_count

    assert EPSILON == 1e-5, "the graph's InstanceNormalization epsilon must be the network's"
    graph = _GraphBuilder(weights)
    x = graph.node("Transpose", [INPUT_NAME], perm=[0, 3, 1, 2])  # NHWC -> NCHW.
    x = graph.node("Sub", [graph.node("Mul", [x, graph.constant("to_unit", np.float32(1 / 127.5))]),
                           graph.constant("one", np.float32(1.0))])
    x = graph.conv_layer(x, "encoder/0")
    x = graph.conv_layer(x, "encoder/1", stride=2)
    x = graph.conv_layer(x, "encoder/2", stride=2)
    for index in range(residual_block_count(weights)):
        residual = graph.conv_layer(x, f"residuals/{index}/first")
        x = graph.node("Add", [x, graph.conv_layer(residual, f"residuals/{index}/second", relu=False)])
    scales = graph.constant("upsample_scales", np.array([1, 1, 2, 2], np.float32))
    for index in range(2):
        x = graph.conv_layer(graph.node("Resize", [x, "", scales], mode="nearest"), f"decoder/{index}/conv")
    x = graph.conv_layer(x, "output_conv", normalize=False, relu=False)
    x = graph.node("Mul", [graph.node("Sigmoid", [x]), graph.constant("to_levels", np.float32(255.0))])
    graph.nodes.append(helper.make_node("Transpose", [x], [OUTPUT_NAME], perm=[0, 2, 3, 1]))
    image = [1, None, None, 3]
    model = helper.make_model(
        helper.make_graph(graph.nodes, "plain_transformer",
                          [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, image)],
                          [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, image)], graph.initializers),
        opset_imports=[helper.make_opsetid("", OPSET)])
    checker.check_model(model)
    return model


def onnxruntime_runner(weights: dict, threads: int = 0):
    """``(run, versions)``: ``run(image)`` runs one float32 [1, H, W, 3] image in ONNX Runtime's CPU provider
    (default session options but the thread count, 0: ONNX Runtime's own choice)."""
    import onnx
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(plain_onnx_model(weights).SerializeToString(), options,
                                           providers=["CPUExecutionProvider"])

    def run(image: np.ndarray) -> np.ndarray:
        return session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(image, np.float32)})[0]

    return run, f"onnxruntime {onnxruntime.__version__}, onnx {onnx.__version__} (opset {OPSET})"
