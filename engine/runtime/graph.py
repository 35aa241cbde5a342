"""Any ONNX graph on ONNX Runtime, by tensor name: the shared session set-up of every ONNX model the app runs.

The InstanceHMR backend and the real-footage models (a person detector and a landmark network converted from
registry packages) all open their sessions here, so provider choice, thread counts and the "providers actually
used" check exist once. ``get_providers()`` is read after creation because onnxruntime-gpu lists CUDA/TensorRT as
*available* even when their libraries fail to load, then silently runs on the CPU.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendError, ModelFileError

__all__ = ["DEFAULT_PROVIDERS", "PROVENANCE_KEY", "OnnxGraph", "TorchGraph", "create_session", "device_of"]

log = logging.getLogger(__name__)

# preference order; only the ones compiled into the installed onnxruntime are requested
DEFAULT_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
_DEVICE = {"CPUExecutionProvider": "cpu", "CUDAExecutionProvider": "cuda", "TensorrtExecutionProvider": "cuda"}
PROVENANCE_KEY = "provenance"  # metadata_props key of converted third-party models


def device_of(provider: str) -> str:
    return _DEVICE.get(provider, provider)


def create_session(path: str | Path, intra_op_threads: int = 1, inter_op_threads: int = 1,
                   providers: Sequence[str] | None = None, hint: str = "") -> tuple[Any, tuple[str, ...], str]:
    """Open an ONNX Runtime session with the fastest available providers.

    The intra-op workers never spin-wait between ops: in the app every core is shared with other stages, and a
    worker spinning for the next op takes that core from them. End to end on 2 cores: the real-footage networks on
    2 spinning threads ran at 13 FPS, on 2 sleeping ones 11 % faster than on 1 (~22 FPS); the InstanceHMR demo with
    ``--threads 2`` ran 22-28 FPS spinning, 28-30 sleeping. A network timed alone on an idle machine is the
    exception (MobileNetV3 @256, 2 threads: 17 ms spinning, 26 ms sleeping); the app is never that. Results are
    bit-identical either way.

    Args:
        path: the .onnx file.
        intra_op_threads: threads inside one op (1 leaves the other core to capture/render/encode).
        inter_op_threads: threads across ops (1: these graphs are chains).
        providers: requested execution providers in order; None = every GPU provider present, then CPU.
        hint: what to do when the file is missing or broken (appended to the error).

    Returns:
        (session, providers actually used, a short note for the HUD/logs).
    """
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"ONNX model not found: {path}{'; ' + hint if hint else ''}")
    available = set(ort.get_available_providers())
    wanted = [p for p in (providers or DEFAULT_PROVIDERS) if p in available]
    if not wanted:
        raise BackendError(f"none of the requested ONNX Runtime providers {list(providers or [])} is available "
                           f"(installed: {sorted(available)})")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = intra_op_threads
    opts.inter_op_num_threads = inter_op_threads
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3  # provider load failures are reported through get_providers() below
    try:
        session = ort.InferenceSession(str(path), sess_options=opts, providers=wanted)
    except Exception as e:  # ORT raises Fail/InvalidProtobuf/InvalidGraph/NotImplemented (pybind types)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise ModelFileError(f"{path} is not a loadable ONNX model ({type(e).__name__}: {first})"
                             f"{'; ' + hint if hint else ''}") from e
    used = tuple(session.get_providers())
    note = f"{used[0]}, intra_op={intra_op_threads}"
    if wanted[0] != used[0]:
        log.warning("ONNX Runtime could not use %s; running on %s", wanted[0], used[0])
        note += f" ({wanted[0]} failed to load)"
    return session, used, note


class OnnxGraph:
    """A converted third-party model: named inputs in, named outputs out, with its provenance record.

    Args:
        path: the .onnx file.
        inputs / outputs: the tensor names the caller relies on; a file without them is refused (a model of
            another kind, or a stale conversion) instead of failing on the first frame.
        threads: ONNX Runtime intra-op threads.
        providers: see :func:`create_session`.
        device: instead of ``providers``, the app's ``--device`` choice (auto | cpu | cuda[:N]): cpu keeps the
            session off the GPU, cuda requires onnxruntime-gpu's providers (see :mod:`.device`).
    """

    def __init__(self, path: str | Path, inputs: Sequence[str], outputs: Sequence[str], threads: int = 1,
                 providers: Sequence[str] | None = None, device: str | None = None) -> None:
        self.path = Path(path)
        if providers is None and device is not None:
            from .device import providers_for

            providers = providers_for(device)
        hint = "the bundled real-footage models are rebuilt with `python -m export realfootage`"
        self.session, self.providers, self.note = create_session(self.path, threads, providers=providers, hint=hint)
        have_in = [i.name for i in self.session.get_inputs()]
        have_out = [o.name for o in self.session.get_outputs()]
        missing = [n for n in inputs if n not in have_in] + [n for n in outputs if n not in have_out]
        if missing:
            raise ModelFileError(f"{self.path.name} is not the expected model: tensors {missing} are missing "
                                 f"(it has inputs {have_in}, outputs {have_out}); {hint}")
        self.output_names = list(outputs)
        self.input_names = have_in
        self.input_shapes = {i.name: list(i.shape) for i in self.session.get_inputs()}
        raw = self.session.get_modelmeta().custom_metadata_map.get(PROVENANCE_KEY, "{}")
        try:
            self.provenance: dict[str, Any] = json.loads(raw)
        except json.JSONDecodeError:
            self.provenance = {}
        self.device = device_of(self.providers[0])

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outs = self.session.run(self.output_names, feeds)
        return dict(zip(self.output_names, outs))

    def close(self) -> None:
        self.session = None  # frees the native session


class TorchGraph:
    """A torch module by tensor name, with the same ``run(feeds) -> outputs`` contract as :class:`OnnxGraph`: the
    fp32 reference path of networks that also run exported (the 2D-pose-guided regressors).

    Args:
        module: takes the feeds as keyword arguments and returns a dict of tensors.
        outputs: the names returned by :meth:`run`, in order.
        device: torch device string.
    """

    def __init__(self, module: Any, outputs: Sequence[str], device: str = "cpu") -> None:
        self.module = module.eval().to(device)
        self.output_names = list(outputs)
        self.device = device
        self.note = f"torch eager {device}"

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        with torch.inference_mode():
            out = self.module(**{k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)).to(self.device)
                                 for k, v in feeds.items()})
        return {k: out[k].float().cpu().numpy() for k in self.output_names}

    def close(self) -> None:
        self.module = None
