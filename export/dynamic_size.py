"""Make a converted fixed-size image network accept any input height and width (multiples of its largest stride).

Why: the TF.js detector graph was exported for a 416x416 input, and its upsampling nodes carry their output size
as a constant. Run on a letterboxed 4:3 or 16:9 frame, a square input spends a quarter to a third of the network
on padding. The graph's convolutions and reshapes do not care about the spatial size; only the constant-size
``Resize`` nodes do. This pass rewrites each of them to its (integer) scale factor, which is the same operation at
the exported size and the right one at any other, and marks the input's height and width symbolic.

Equivalence at the exported size is exact (the pass is checked there by the caller); at other sizes there is no
reference runtime (the TF.js graph is fixed-size), so :func:`detections_agree` compares what the detector finds on
real frames with the rectangular input against the square one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference

from engine.errors import ExportError

__all__ = ["make_size_dynamic"]


def _static_shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    inferred = shape_inference.infer_shapes(model, data_prop=True)
    shapes: dict[str, list[int]] = {}
    for vi in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        dims = vi.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            shapes[vi.name] = [d.dim_value for d in dims]
    return shapes


def make_size_dynamic(model: onnx.ModelProto, height: str = "height", width: str = "width") -> onnx.ModelProto:
    """A copy of ``model`` whose single image input (NCHW) takes any height and width.

    Raises:
        ExportError: a ``Resize`` whose output size is not a constant whole multiple (or whole fraction) of its
            input size (the graph then depends on the exported size in a way this pass cannot rewrite).
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    shapes = _static_shapes(model)
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    for node in g.node:
        if node.op_type != "Resize" or len(node.input) < 4 or not node.input[3]:
            continue
        src = shapes.get(node.input[0])
        sizes = node.input[3]
        if sizes in inits:
            target = inits[sizes][-2:]
        else:
            concat = producer.get(sizes)
            consts = [inits[i] for i in concat.input if i in inits] if concat is not None else []
            if concat is None or concat.op_type != "Concat" or len(consts) != 1 or consts[0].size != 2:
                raise ExportError(f"Resize {node.name}: output size is not a constant; cannot make the input size "
                                  "dynamic")
            target = consts[0]
        if src is None:
            raise ExportError(f"Resize {node.name}: input shape unknown; cannot make the input size dynamic")
        factors = np.asarray(target, np.float64) / np.asarray(src[-2:], np.float64)
        whole = np.where(factors >= 1, factors, 1.0 / factors)
        if not np.allclose(whole, np.round(whole)):
            raise ExportError(f"Resize {node.name}: scale {factors.tolist()} is neither a whole number nor one over "
                              "a whole number")
        name = f"{node.name or node.output[0]}_scales"
        g.initializer.append(numpy_helper.from_array(np.asarray([1, 1, *factors], np.float32), name))
        x = node.input[0]
        del node.input[:]
        node.input.extend([x, "", name])
    inp = g.input[0]
    dims = inp.type.tensor_type.shape.dim
    if len(dims) != 4:
        raise ExportError(f"input {inp.name} is not NCHW (rank {len(dims)})")
    dims[2].ClearField("dim_value")
    dims[2].dim_param = height
    dims[3].ClearField("dim_value")
    dims[3].dim_param = width
    # shapes recorded for the fixed size are wrong now; ONNX Runtime infers them again
    del g.value_info[:]
    for o in g.output:
        for d in o.type.tensor_type.shape.dim:
            if d.HasField("dim_value") and d.dim_value not in (1,):
                d.ClearField("dim_value")
                d.dim_param = f"{o.name}_dim"

    _prune(g)
    onnx.checker.check_model(out)
    return out


def _prune(g: onnx.GraphProto) -> None:
    """Drop nodes and initializers nothing reads any more (the old size computations)."""
    while True:
        used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
        dead = [n for n in g.node if not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            g.node.remove(n)
    used = {i for n in g.node for i in n.input}
    for init in [i for i in g.initializer if i.name not in used]:
        g.initializer.remove(init)


def make_file_size_dynamic(path: Path, inputs: list[np.ndarray], multiple_of: int, tolerance: float = 1e-5) -> dict:
    """Rewrite the .onnx at ``path`` in place with :func:`make_size_dynamic`, after checking that the rewritten
    graph gives the same outputs as the original on ``inputs`` (at the exported size).

    Returns:
        The record kept in the model's provenance (``spatial``): how the size became dynamic and the check.

    Raises:
        ExportError: the outputs differ by more than ``tolerance`` (absolute).
    """
    import onnxruntime as ort

    model = onnx.load(str(path))
    dynamic = make_size_dynamic(model)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    before = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    after = ort.InferenceSession(dynamic.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    name = before.get_inputs()[0].name
    worst = 0.0
    for x in inputs:
        for a, b in zip(before.run(None, {name: x}), after.run(None, {name: x}), strict=True):
            worst = max(worst, float(np.abs(a - b).max()))
    if worst > tolerance:
        raise ExportError(f"{path.name}: the size-dynamic graph differs from the fixed-size one by {worst:.3g} "
                          f"(> {tolerance:g}) at the exported size")
    onnx.save(dynamic, str(path))
    return {"height_width": "dynamic", "multiple_of": multiple_of,
            "how": "constant-size Resize nodes rewritten to their scale factors (export/dynamic_size.py)",
            "same_as_fixed_size_max_abs": worst, "checked_inputs": len(inputs)}
