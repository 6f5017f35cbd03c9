"""Request tensors in and out: TensorProto and TF Serving's REST JSON <-> numpy, checked against a signature.

Every check raises `InvalidInputError` with a message in TF Serving's words,
so the gRPC and REST front ends answer the same mistake the same way.
"""

import base64
import binascii
import json
import math

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2

from impasto.model.errors import InvalidInputError

Arrays = dict[str, np.ndarray]
Specs = dict[str, tf.TensorSpec]
_OBJECT_BYTES = 8
"""What one element of a decoded string tensor costs at least: a pointer (repeated values share one object)."""


def from_tensor_proto(key: str, proto: tensor_pb2.TensorProto, max_bytes: int | None = None) -> np.ndarray:
    """Decodes one request TensorProto, refusing a shape that would expand past `max_bytes` once decoded.

    A TensorProto may hold fewer values than its shape claims (TensorFlow repeats the
    last one), so a few bytes on the wire can claim gigabytes: the claim is checked
    from the shape before anything is allocated.

    Args:
        key: the input's name, for messages.
        proto: the request tensor.
        max_bytes: largest decoded size accepted; None for no limit.

    Raises:
        InvalidInputError: a negative or unknown dimension, too many elements, inconsistent
            shape and content, or an unsupported dtype.
    """
    if proto.tensor_shape.unknown_rank:
        raise InvalidInputError(f"input '{key}': TensorProto has an unknown rank")
    dims = [dim.size for dim in proto.tensor_shape.dim]
    if any(size < 0 for size in dims):
        raise InvalidInputError(f"input '{key}': TensorProto has a negative dimension in its shape {dims}")
    elements = math.prod(dims)
    try:
        itemsize = max(tf.as_dtype(proto.dtype).size, 1)
    except TypeError:
        raise InvalidInputError(f"input '{key}': unsupported dtype {proto.dtype}") from None
    itemsize = _OBJECT_BYTES if proto.dtype == types_pb2.DT_STRING else itemsize
    if max_bytes is not None and elements * itemsize > max_bytes:
        raise InvalidInputError(f"input '{key}': shape {dims} holds {elements} elements, more than this server "
                                f"decodes in one request ({max_bytes} bytes)")
    try:
        return tf.make_ndarray(proto)
    except (ValueError, TypeError, IndexError, MemoryError) as error:
        raise InvalidInputError(f"input '{key}': cannot decode TensorProto ({error})") from None


def decode_protos(specs: Specs, protos, max_bytes: int | None = None) -> Arrays:
    """Decodes a request's input TensorProtos after the checks that need no decoding: keys, then dtypes.

    Args:
        specs: the signature's inputs.
        protos: the request's ``inputs`` map.
        max_bytes: largest decoded size of any one input; None for no limit.

    Raises:
        InvalidInputError: extra or missing keys, a wrong dtype, or a tensor that cannot be decoded.
    """
    check_keys(specs, protos)
    check_proto_dtypes(specs, protos)
    return {key: from_tensor_proto(key, protos[key], max_bytes) for key in sorted(protos)}


_PROTO_FIELDS = {
    types_pb2.DT_FLOAT: "float_val", types_pb2.DT_DOUBLE: "double_val", types_pb2.DT_INT32: "int_val",
    types_pb2.DT_INT16: "int_val", types_pb2.DT_INT8: "int_val", types_pb2.DT_UINT8: "int_val",
    types_pb2.DT_UINT16: "int_val", types_pb2.DT_INT64: "int64_val", types_pb2.DT_UINT32: "uint32_val",
    types_pb2.DT_UINT64: "uint64_val", types_pb2.DT_BOOL: "bool_val", types_pb2.DT_STRING: "string_val",
}
"""The repeated field TensorFlow's Tensor::AsProtoField fills for each dtype."""


def to_tensor_proto(array: np.ndarray) -> tensor_pb2.TensorProto:
    """Encodes one output array in the typed repeated field (float_val, string_val, ...), as TF Serving's
    Predict does (Tensor::AsProtoField), so clients that read `float_val` see the values; dtypes without
    such a field go into tensor_content."""
    dtype = tf.as_dtype(array.dtype if array.dtype != object else tf.string).as_datatype_enum
    field = _PROTO_FIELDS.get(dtype)
    if field is None:
        return tf.make_tensor_proto(array)
    proto = tensor_pb2.TensorProto(dtype=dtype)
    proto.tensor_shape.SetInParent()  # Present for a scalar too, as AsProtoField writes it.
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    getattr(proto, field).extend(array.ravel().tolist())
    return proto


def tf_type_name(enum: int) -> str:
    """DT_FLOAT -> 'float', DT_STRING -> 'string': TensorFlow's DataTypeString, as its messages spell dtypes."""
    try:
        return types_pb2.DataType.Name(enum).removeprefix("DT_").lower()
    except ValueError:
        return "invalid"


def check_proto_dtypes(specs: Specs, protos) -> None:
    """Refuses request TensorProtos whose dtype differs from the signature's, before decoding them.

    Raises:
        InvalidInputError: "Expects arg[i] to be <dtype> but <dtype> is provided", TensorFlow's words.
    """
    for index, key in enumerate(sorted(specs)):
        if key in protos and protos[key].dtype != specs[key].dtype.as_datatype_enum:
            raise InvalidInputError(f"Expects arg[{index}] to be {tf_type_name(specs[key].dtype.as_datatype_enum)} "
                                    f"but {tf_type_name(protos[key].dtype)} is provided (input '{key}')")


def check_keys(specs: Specs, names) -> None:
    """Refuses a request whose input keys differ from the signature's.

    Raises:
        InvalidInputError: naming the extra and the missing keys.
    """
    extra, missing = sorted(set(names) - set(specs)), sorted(set(specs) - set(names))
    if extra or missing:
        raise InvalidInputError(
            f"input size does not match signature: {len(names)}!={len(specs)} "
            f"len({{{','.join(sorted(names))}}}) != len({{{','.join(sorted(specs))}}}). "
            f"Sent extra: {{{','.join(extra)}}}. Missing but required: {{{','.join(missing)}}}.")


def check_inputs(specs: Specs, inputs: Arrays, max_batch_size: int | None = None) -> int:
    """Checks decoded inputs against a signature whose shapes are a contract: impasto's own exports.

    Their session would pass on whatever shape the request holds, as TF Serving's does, and
    fail deep in the graph; this answers first, naming the input.

    Args:
        specs: the signature's inputs.
        inputs: the request's inputs, already decoded.
        max_batch_size: refuse requests with a larger leading dimension.

    Returns:
        The batch size (the common leading dimension).

    Raises:
        InvalidInputError: extra or missing keys, a wrong shape, an empty or oversized batch.
    """
    check_keys(specs, inputs)
    batch_sizes = {}
    for key in sorted(specs):
        shape, expected = inputs[key].shape, specs[key].shape
        if expected.rank is not None and (len(shape) != expected.rank or not expected.is_compatible_with(shape)):
            raise InvalidInputError(f"input '{key}' has shape {list(shape)}; the signature expects "
                                    f"{[-1 if d is None else d for d in expected.as_list()]}")
        if not shape:
            raise InvalidInputError(f"input '{key}' is a scalar; the signature expects a batch")
        batch_sizes[key] = shape[0]
    if len(set(batch_sizes.values())) > 1:
        raise InvalidInputError(f"inputs have different batch sizes: {batch_sizes}")
    batch = next(iter(batch_sizes.values()))
    names = ", ".join(f"'{key}'" for key in sorted(batch_sizes))
    if batch == 0:
        raise InvalidInputError(f"empty batch: 0 elements in the first dimension of input {names}")
    if max_batch_size and batch > max_batch_size:
        raise InvalidInputError(f"input {names}: batch of {batch} exceeds this server's limit of {max_batch_size} "
                                "per request")
    return batch


def batch_size(inputs: Arrays) -> int:
    """The common first dimension of a request's inputs, which server-side batching splits and joins along.

    Raises:
        InvalidInputError: a scalar input or differing first dimensions, in TF Serving's batching words.
    """
    if not inputs or any(array.ndim == 0 for array in inputs.values()):
        raise InvalidInputError("Batching Run() input tensors must have at least one dimension")
    sizes = {array.shape[0] for array in inputs.values()}
    if len(sizes) > 1:
        raise InvalidInputError("Batching Run() input tensors must have equal 0th-dimension size")
    return sizes.pop()


def check_output_filter(outputs, output_filter) -> list[str]:
    """The outputs to send back: all when the filter is empty.

    Raises:
        InvalidInputError: the filter names an output the signature lacks, or one output twice.
    """
    output_filter = list(output_filter)
    for index, alias in enumerate(output_filter):
        if alias in output_filter[:index]:
            raise InvalidInputError(f"duplicate output tensor alias: {alias}")
        if alias not in outputs:
            raise InvalidInputError(f"output tensor alias not found in signature: {alias} Outputs expected "
                                    f"to be in the set {{{','.join(sorted(outputs))}}}.")
    return list(output_filter) or sorted(outputs)


def from_json(key: str, value, spec: tf.TensorSpec) -> np.ndarray:
    """Decodes one input from TF Serving's REST JSON: nested lists, strings as text or {"b64": ...}.

    Raises:
        InvalidInputError: values that do not fit the signature's dtype (in TF Serving's words), are
            ragged or nest too deeply.
    """
    try:
        error = json_type_error(value, spec)
        if error:
            raise InvalidInputError(error)
        return _from_json(key, value, spec)
    except RecursionError:
        raise InvalidInputError(f"input '{key}': lists nested too deeply") from None


def json_type_error(value, spec: tf.TensorSpec) -> str | None:
    """TF Serving's message for the first leaf of `value` that the signature's dtype cannot hold, or None.

    Numbers fit float and double (not booleans), integers fit integer dtypes, booleans bool,
    and strings or {"b64": ...} objects fit string.

    Raises:
        InvalidInputError: lists nested too deeply to walk.
    """
    leaves = []
    try:
        _map_leaves(value, leaves.append)
    except RecursionError:
        raise InvalidInputError("JSON Value: lists nested too deeply") from None
    dtype = spec.dtype
    for leaf in leaves:
        if dtype == tf.string:
            fits = isinstance(leaf, str | dict)
        elif dtype == tf.bool:
            fits = isinstance(leaf, bool)
        elif dtype.is_floating:
            fits = isinstance(leaf, (int, float)) and not isinstance(leaf, bool)
        elif dtype.is_integer:
            fits = isinstance(leaf, int) and not isinstance(leaf, bool)
        else:
            fits = True
        if not fits:
            return (f"JSON Value: {json.dumps(leaf)} Type: {_json_type(leaf)} is not of expected type: "
                    f"{tf_type_name(dtype.as_datatype_enum)}")
    return None


def _json_type(value) -> str:
    """rapidjson's name for a JSON value's type, as TF Serving's messages use it."""
    if value is None or isinstance(value, bool):
        return {None: "Null", True: "True", False: "False"}[value]
    if isinstance(value, (int, float)):
        return "Number"
    return {dict: "Object", list: "Array", str: "String"}.get(type(value), type(value).__name__)


def _from_json(key: str, value, spec: tf.TensorSpec) -> np.ndarray:
    """`from_json` after the type check, without the guard against deep nesting."""
    if spec.dtype == tf.string:
        value = _map_leaves(value, lambda leaf: _json_string(key, leaf))
        try:
            array = np.array(value, dtype=object)
        except ValueError:
            raise InvalidInputError(f"input '{key}': ragged nested lists") from None
        if any(not isinstance(item, bytes) for item in array.reshape(-1)):
            raise InvalidInputError(f"input '{key}': ragged nested lists")
        return array
    try:
        return np.asarray(value, dtype=spec.dtype.as_numpy_dtype)
    except (ValueError, TypeError, OverflowError):
        raise InvalidInputError(f"input '{key}': ragged nested lists") from None


def _json_string(key: str, leaf) -> bytes:
    """One string leaf: {"b64": ...} decoded, or text encoded as UTF-8."""
    if isinstance(leaf, dict):
        if set(leaf) != {"b64"} or not isinstance(leaf["b64"], str):
            raise InvalidInputError(f"input '{key}': JSON object must be of the form {{\"b64\": \"<base64>\"}}")
        try:
            return base64.b64decode(leaf["b64"], validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInputError(f"input '{key}': invalid base64 in {{\"b64\": ...}}") from None
    if isinstance(leaf, str):
        return leaf.encode()
    raise InvalidInputError(f"JSON Value: {json.dumps(leaf)} Type: {_json_type(leaf)} is not of expected type: string")


def _map_leaves(value, function):
    """Applies `function` to every non-list leaf of nested lists."""
    if isinstance(value, list):
        return [_map_leaves(item, function) for item in value]
    return function(value)


def to_json(key: str, array: np.ndarray):
    """Encodes one output for REST: strings as {"b64": ...} when the key ends in _bytes (as TF Serving does)."""
    if array.dtype == object:
        as_b64 = key.endswith("_bytes")
        return _map_leaves(array.tolist(), lambda leaf: _json_output_string(leaf, as_b64))
    if array.dtype == np.float32:  # The shortest text that reads back as the same float32 (0.1, not 0.10000000149).
        return array.astype(str).astype(np.float64).tolist()
    return array.tolist()


def _json_output_string(leaf: bytes, as_b64: bool):
    if not as_b64:
        try:
            return leaf.decode()
        except UnicodeDecodeError:
            pass
    return {"b64": base64.b64encode(leaf).decode("ascii")}
