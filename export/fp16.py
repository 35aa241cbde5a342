"""FP32 ONNX -> FP16 ONNX with FP32 islands: the CPU-runnable proxy for a TensorRT FP16 engine.

TensorRT cannot run on the project's machines, but the numerics of "FP16 everywhere except where it overflows"
can: this module rewrites the graph so that every op on an allowlist computes in FP16 and everything else stays
FP32, with Cast nodes at the boundaries. ONNX Runtime then runs it on the CPU, and :func:`fp16_report` compares the
decoded people with the FP32 model on real frames.

The FP32 islands are the same rule the TensorRT builder applies (:func:`is_fp32_island`), so the proxy measures
what the engine would do: layers that produce a network output (the centre and joint heatmap logits, the parameter
map that carries the 1.1^x camera scale), and every Pow/Exp/Softmax/Sigmoid/Log (exp-like ops overflow FP16 at
x > ~11 for e^x and x > ~116 for 1.1^x). Written against the onnx API directly (onnxconverter-common is not a
dependency): a per-tensor "versions" map records the FP32 and FP16 names of each tensor so a tensor is cast at most
once per direction.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from engine.errors import ExportError
from engine.runtime.meta import ArtifactMeta

from .compare import PeopleDiff, compare_maps
from .onnx import read_onnx_meta, set_onnx_meta

__all__ = ["FP16_OPS", "FP32_ISLAND_OPS", "convert_file", "convert_to_fp16", "fp16_report", "is_fp32_island",
           "torch_fp16_report"]

log = logging.getLogger(__name__)

FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16
# ops whose exp-like range overflows FP16; kept FP32 in the ONNX proxy and in the TensorRT engine
FP32_ISLAND_OPS = frozenset({"Pow", "Exp", "Softmax", "LogSoftmax", "Sigmoid", "Log", "Erf"})
# op -> indices of its float data inputs (None: all inputs); every other op stays FP32
FP16_OPS: dict[str, tuple[int, ...] | None] = {
    "Conv": None, "ConvTranspose": None, "BatchNormalization": None, "Relu": None, "LeakyRelu": None, "Add": None,
    "Sub": None, "Mul": None, "Div": None, "HardSwish": None, "HardSigmoid": None, "GlobalAveragePool": None,
    "AveragePool": None, "MaxPool": None, "Concat": None, "Clip": None, "Flatten": None, "Transpose": None,
    "Resize": (0,), "Slice": (0,), "Expand": (0,), "Reshape": (0,), "ReduceMean": (0,), "Squeeze": (0,),
    "Unsqueeze": (0,),
}


def is_fp32_island(op_type: str, outputs: list[str], graph_outputs: set[str]) -> bool:
    """The shared FP32 rule: network outputs (heatmap logits, parameter map) and exp-like ops."""
    return op_type in FP32_ISLAND_OPS or bool(set(outputs) & graph_outputs)


def _float_types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {}
    for vi in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output):
        types[vi.name] = vi.type.tensor_type.elem_type
    for init in model.graph.initializer:
        types[init.name] = init.data_type
    return types


def convert_to_fp16(model: onnx.ModelProto, emulate: bool = False) -> tuple[onnx.ModelProto, list[str]]:
    """Return (FP16 model with FP32 I/O and FP32 islands, names of the nodes kept FP32).

    Args:
        emulate: keep every tensor FP32 but round each FP16-region tensor and weight to FP16 (a Cast->Cast pair,
            FP16-rounded weights). ONNX Runtime's CPU provider has few FP16 kernels: for the rest it inserts
            upcasts and then cancels them against ours, so a true FP16 graph silently runs in FP32 there (an FP16
            Exp -> Relu chain did not overflow). Emulation cannot be optimised away, so it is the CPU proxy for
            TensorRT's FP16 storage (arithmetic inside each op stays FP32, like TensorRT's FP32 accumulation).
    """
    g = model.graph
    types = _float_types(model)
    graph_outputs = {o.name for o in g.output}
    inits = {i.name: i for i in g.initializer}
    new_inits: list[onnx.TensorProto] = []
    versions: dict[str, dict[int, str]] = {}
    alias: dict[str, str] = {}
    nodes: list[onnx.NodeProto] = []
    islands: list[str] = []

    def get(name: str, dtype: int) -> str:
        name = alias.get(name, name)
        if not name:
            return name
        v = versions.setdefault(name, {FLOAT: name} if name not in inits or inits[name].data_type == FLOAT else {})
        if dtype in v or types.get(name) != FLOAT:
            return v.get(dtype, name)
        new = f"{name}__{'fp16' if dtype == HALF else 'fp32'}"
        if name in inits:
            arr = numpy_helper.to_array(inits[name])
            arr = arr.astype(np.float16 if dtype == HALF else np.float32)
            new_inits.append(numpy_helper.from_array(arr.astype(np.float32) if emulate else arr, new))
        elif emulate:  # round through FP16 and back
            src = next(iter(v.values()))
            nodes.append(helper.make_node("Cast", [src], [new + "_h"], to=HALF, name=f"cast_{new}_h"))
            nodes.append(helper.make_node("Cast", [new + "_h"], [new], to=FLOAT, name=f"cast_{new}"))
        else:
            src = next(iter(v.values()))
            nodes.append(helper.make_node("Cast", [src], [new], to=dtype, name=f"cast_{new}"))
        v[dtype] = new
        return new

    for node in g.node:
        if node.op_type == "Identity" and node.output[0] not in graph_outputs:
            alias[node.output[0]] = alias.get(node.input[0], node.input[0])
            continue
        idx = FP16_OPS.get(node.op_type, ())
        data = [i for i in range(len(node.input)) if idx is None or i in idx]
        half = (node.op_type in FP16_OPS and not is_fp32_island(node.op_type, list(node.output), graph_outputs)
                and all(types.get(alias.get(node.input[i], node.input[i])) == FLOAT for i in data if node.input[i]))
        if is_fp32_island(node.op_type, list(node.output), graph_outputs):
            islands.append(node.name or node.output[0])
        new = onnx.NodeProto()
        new.CopyFrom(node)
        del new.input[:]
        for i, name in enumerate(node.input):
            new.input.append(get(name, HALF if half and i in data else FLOAT))
        nodes.append(new)
        if half:
            for j, o in enumerate(node.output):
                if types.get(o) != FLOAT:
                    continue
                if emulate:  # computed in FP32 from rounded inputs: round the result, FP32 consumers read it as is
                    new.output[j] = o + "__raw"
                    nodes.append(helper.make_node("Cast", [o + "__raw"], [o + "__h"], to=HALF, name=f"cast_{o}_h"))
                    nodes.append(helper.make_node("Cast", [o + "__h"], [o], to=FLOAT, name=f"cast_{o}_r"))
                    versions[o] = {HALF: o, FLOAT: o}
                else:
                    versions[o] = {HALF: o}

    for o in g.output:  # islands keep outputs FP32, but cast anything else that ended up FP16
        v = versions.get(alias.get(o.name, o.name), {})
        if FLOAT not in v and HALF in v:
            raise ExportError(f"FP16 conversion left output {o.name} in FP16; the island rule should prevent this")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    used = {i for n in nodes for i in n.input}
    keep = [i for i in g.initializer if i.name in used]
    del out.graph.initializer[:]
    out.graph.initializer.extend(keep + new_inits)
    del out.graph.value_info[:]
    return out, islands


def convert_file(src: str | Path, dst: str | Path, emulate: bool = False) -> tuple[Path, ArtifactMeta]:
    """Convert an exported ONNX file; the metadata records the precision (fp16 / fp16-emulated) and the islands."""
    src, dst = Path(src), Path(dst)
    model = onnx.load(str(src))
    meta = read_onnx_meta(model, str(src))
    half, islands = convert_to_fp16(model, emulate)
    try:
        onnx.checker.check_model(half)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"FP16 conversion of {src} produced an invalid graph: {str(e).splitlines()[0]}") from e
    precision = "fp16-emulated" if emulate else "fp16"
    meta = replace(meta, precision=precision, fp32_islands=tuple(islands))
    set_onnx_meta(half, meta)
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(half, str(dst))
    return dst, meta


def fp16_report(fp32_onnx: str | Path, fp16_onnx: str | Path, frames: list[np.ndarray], threshold: float = 0.2,
                threads: int = 2) -> tuple[dict[str, float], PeopleDiff]:
    """Run FP32 and FP16 models in ONNX Runtime (CPU) on ``frames``; return (max rel map error, people diff)."""
    from engine.decode import DecodeCfg, decode_people
    from engine.preprocess import letterbox
    from engine.runtime.onnxruntime_backend import OnnxRuntimeBackend

    cpu = ("CPUExecutionProvider",)
    ref = OnnxRuntimeBackend(fp32_onnx, intra_op_threads=threads, providers=cpu)
    half = OnnxRuntimeBackend(fp16_onnx, intra_op_threads=threads, providers=cpu)
    cfg = DecodeCfg(threshold=threshold)
    rel_max: dict[str, float] = {}
    diff = PeopleDiff()
    for frame in frames:
        image, box = letterbox(frame, ref.input_size)
        a, b = ref.infer(image[None]), half.infer(image[None])
        for k, v in compare_maps(a, b)[1].items():
            rel_max[k] = max(rel_max.get(k, 0.0), v)
        diff.add(decode_people(a["center_map"][0], a["params_maps"][0], box.input_size, cfg),
                 decode_people(b["center_map"][0], b["params_maps"][0], box.input_size, cfg))
    return rel_max, diff


def torch_fp16_report(model, frames: list[np.ndarray], device: str = "cuda:0", threshold: float = 0.2,
                      cuda_graphs: bool = True) -> tuple[dict[str, float], PeopleDiff]:
    """The torch FP16 path (autocast, the same FP32 islands, CUDA graph) against torch FP32 on ``frames``.

    The reference is the host path (OpenCV letterbox, FP32 eager, numpy decoder); the candidate is the GPU-resident
    frame path of :class:`engine.runtime.torch_cuda.TorchCudaBackend` (device letterbox, FP16, device decoder),
    so the report covers everything the GPU path changes. On the CPU (``device="cpu"``) the FP16 side runs under
    CPU autocast without a graph: a check that the code path works, not a GPU measurement.

    Returns:
        (max rel map error per output, people diff).
    """
    import copy

    from engine.decode import DecodeCfg, decode_people
    from engine.preprocess import letterbox
    from engine.runtime.torch_backend import TorchBackend
    from engine.runtime.torch_cuda import TorchCudaBackend, eager_capture

    on_cuda = device.startswith("cuda")
    ref = TorchBackend(copy.deepcopy(model), device=device)
    half = TorchCudaBackend(copy.deepcopy(model), device, fp16=True, cuda_graphs=cuda_graphs and on_cuda,
                            capture=None if on_cuda else eager_capture)
    cfg = DecodeCfg(threshold=threshold)
    rel_max: dict[str, float] = {}
    diff = PeopleDiff()
    try:
        for frame in frames:
            image, box = letterbox(frame, ref.input_size)
            a, b = ref.infer(image[None]), half.infer(image[None])
            for k, v in compare_maps(a, b)[1].items():
                rel_max[k] = max(rel_max.get(k, 0.0), v)
            diff.add(decode_people(a["center_map"][0], a["params_maps"][0], box.input_size, cfg),
                     half.frame_people(frame, cfg)[0])
    finally:
        half.close()
    return rel_max, diff
