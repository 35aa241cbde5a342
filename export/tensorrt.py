"""ONNX -> TensorRT engine with the TensorRT Python API (GPU machines only).

FP16 is enabled only when the builder reports fast FP16. The layers the shared island rule names
(:func:`export.fp16.is_fp32_island`: network outputs — centre/joint heatmap logits and the parameter map with the
1.1^x camera scale — and Pow/Exp/Softmax/Sigmoid/Log) are pinned to FP32 with per-layer precision and output type,
enforced by ``OBEY_PRECISION_CONSTRAINTS``. ``strongly_typed=True`` instead feeds TensorRT (>= 9) the FP16 ONNX from
:mod:`export.fp16` with the STRONGLY_TYPED network flag, so the types in the graph are law (TensorRT 10.12+
deprecates weak typing; both paths use the same islands). A timing cache file makes rebuilds fast; the engine file
carries a JSON header (ONNX hash, TensorRT version, GPU name, precision) so a stale or foreign engine is refused.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import onnx

from engine.errors import ExportError
from engine.runtime.artifacts import engine_key
from engine.runtime.meta import write_engine_file
from engine.runtime.tensorrt_backend import gpu_name, import_tensorrt, require_cuda

from .fp16 import convert_file, is_fp32_island
from .onnx import file_sha256, read_onnx_meta

__all__ = ["build_engine", "engine_key", "pin_fp32_islands"]

log = logging.getLogger(__name__)


def _layer_op(layer: Any, trt: Any) -> str:
    """The ONNX-like op name of a TensorRT layer, as far as the island rule needs it."""
    kind = layer.type
    if kind == trt.LayerType.SOFTMAX:
        return "Softmax"
    if kind == trt.LayerType.ELEMENTWISE:
        layer.__class__ = trt.IElementWiseLayer  # the Python API returns ILayer; downcast to read .op
        return "Pow" if layer.op == trt.ElementWiseOperation.POW else "ElementWise"
    if kind == trt.LayerType.UNARY:
        layer.__class__ = trt.IUnaryLayer
        return {trt.UnaryOperation.EXP: "Exp", trt.UnaryOperation.LOG: "Log"}.get(layer.op, "Unary")
    if kind == trt.LayerType.ACTIVATION:
        layer.__class__ = trt.IActivationLayer  # on this class .type is the ActivationType
        return "Sigmoid" if layer.type == trt.ActivationType.SIGMOID else "Activation"
    return str(kind)


def pin_fp32_islands(network: Any, trt: Any) -> list[str]:
    """Set precision and output types to FP32 on the island layers; returns their names."""
    outputs = {network.get_output(i).name for i in range(network.num_outputs)}
    pinned = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        names = [layer.get_output(j).name for j in range(layer.num_outputs)]
        if is_fp32_island(_layer_op(layer, trt), names, outputs):
            layer.precision = trt.float32
            for j in range(layer.num_outputs):
                layer.set_output_type(j, trt.float32)
            pinned.append(layer.name)
    return pinned


def build_engine(onnx_path: str | Path, output: str | Path, *, fp16: bool = True, strongly_typed: bool = False,
                 workspace_gb: float = 4.0, timing_cache: str | Path | None = None, opt_batch: int = 1,
                 device: str = "cuda:0", verbose: bool = False) -> Path:
    """Build and write ``output`` (header + engine). Raises :class:`BackendError` without TensorRT/GPU."""
    trt = import_tensorrt()
    require_cuda(device)
    onnx_path, output = Path(onnx_path), Path(output)
    meta = read_onnx_meta(onnx.load(str(onnx_path), load_external_data=False), str(onnx_path))
    onnx_sha = file_sha256(onnx_path)
    major = int(trt.__version__.split(".")[0])
    logger = trt.Logger(trt.Logger.INFO if verbose else trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if major < 10:  # explicit batch is implied (and the flag deprecated) from TensorRT 10
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    source = onnx_path
    tmp_dir = None
    if strongly_typed:
        if not hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
            raise ExportError(f"--strongly-typed needs TensorRT >= 9 (this is {trt.__version__}); drop the flag")
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        if fp16:
            tmp_dir = tempfile.TemporaryDirectory()
            source = convert_file(onnx_path, Path(tmp_dir.name) / "fp16.onnx")[0]
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(source)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(min(parser.num_errors, 3)))
        raise ExportError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    if hasattr(config, "set_memory_pool_limit"):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    else:  # TensorRT < 8.4
        config.max_workspace_size = int(workspace_gb * (1 << 30))
    precision, islands = "fp32", []
    if fp16 and strongly_typed:
        precision = "fp16"
    elif fp16 and getattr(builder, "platform_has_fast_fp16", True):  # deprecated in TensorRT 10
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        islands = pin_fp32_islands(network, trt)
        precision = "fp16"
    elif fp16:
        log.warning("this GPU has no fast FP16; building an FP32 engine")
    if meta.batch == 0:  # dynamic batch axis: one optimisation profile over 1..max_batch
        s = meta.input_size
        profile = builder.create_optimization_profile()
        profile.set_shape(meta.input_name, (1, 3, s, s), (min(opt_batch, meta.max_batch), 3, s, s),
                          (meta.max_batch, 3, s, s))
        config.add_optimization_profile(profile)
    cache_path = Path(timing_cache) if timing_cache else output.with_suffix(".timing.cache")
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    t0 = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT failed to build an engine from {onnx_path} (run with --verbose for the log)")
    cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    gpu = gpu_name(device)
    meta = replace(meta, precision=precision, fp32_islands=tuple(islands) or meta.fp32_islands, onnx_sha256=onnx_sha,
                   tensorrt_version=trt.__version__, gpu_name=gpu,
                   extra={**meta.extra, "strongly_typed": strongly_typed})
    output.parent.mkdir(parents=True, exist_ok=True)
    write_engine_file(output, meta, bytes(serialized))
    if tmp_dir is not None:
        tmp_dir.cleanup()
    log.info("built %s (%s, %d FP32 island layers) in %.1f s", output, precision, len(islands),
             time.perf_counter() - t0)
    return output
