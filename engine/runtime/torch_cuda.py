"""PyTorch on a CUDA GPU without TensorRT: FP16 with the TensorRT path's FP32 islands, channels-last, CUDA graphs.

Why each piece (numbers measured on an H200, torch 2.11, batch 1): eager FP16 is launch-bound (R50@512 7.9 ms, no
faster than FP32's 7.0 ms), while replaying a captured CUDA graph ran it in 1.93 ms: one launch per frame instead
of hundreds. A graph replays fixed addresses, so :class:`StaticShapeRunner` owns a static input buffer per input
shape, warms up (cuDNN picks its algorithms, the allocator settles), captures, and then only copies each new batch
into that buffer and replays; a new batch shape means a new buffer and a new capture.

FP16 runs under autocast, with the same FP32 islands as the TensorRT FP16 engine and the ONNX FP16 proxy
(``export.fp16.is_fp32_island``): the layers that produce network outputs (the centre, camera and joint heads'
output convolutions) compute in FP32, and so does ``1.1^raw`` (it follows the FP32 camera head). The camera head's
conv is an island here although in the ONNX graph its output is not a graph output: its ``pow`` consumer must see
FP32 values, which an FP16 conv output would only approximate.

The frame path keeps the frame on the GPU: the uint8 frame is staged in pinned host memory and uploaded once
(non-blocking), letterboxed and normalised there (:func:`engine.preprocess.letterbox_torch`), and decoded there
(:func:`engine.decode.decode_people_torch`): only the kept centres' parameters come back to the host.

Nothing here needs a GPU to be tested: the same classes run on the CPU in FP32 (no graph, no autocast), which is
how the CPU tests exercise the buffer/capture/re-capture logic and the island wrapping.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from ..decode import DecodeCfg, decode_people_torch
from ..errors import BackendError
from ..models import InstanceHMR
from ..preprocess import letterbox_torch
from ..types import Letterbox, People
from .base import OUTPUT_NAMES, Backend, BackendSpec

__all__ = ["Fp32Island", "StaticShapeRunner", "TorchCudaBackend", "add_fp32_islands", "cuda_graph_capture",
           "eager_capture"]

log = logging.getLogger(__name__)

Outputs = dict[str, torch.Tensor]
# capture(fn, static_input) -> replay(): runs fn on whatever the static input holds and returns its outputs
Capture = Callable[[Callable[[torch.Tensor], Outputs], torch.Tensor], Callable[[], Outputs]]

# the modules that produce network outputs: final_layers[k][2] is the 1x1 output conv of head k
ISLAND_HEADS = (1, 2, 3)


class Fp32Island(nn.Module):
    """Run ``inner`` in FP32 even inside an FP16 autocast region (input cast up, autocast off)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner.float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self.inner(x.float())


def add_fp32_islands(model: InstanceHMR) -> list[str]:
    """Wrap the output convolutions of the centre, camera and joint heads in :class:`Fp32Island` (in place).

    Returns:
        the wrapped module names (idempotent: already wrapped ones are left as they are).
    """
    names = []
    for k in ISLAND_HEADS:
        head = model.final_layers[k]
        if not isinstance(head[2], Fp32Island):
            head[2] = Fp32Island(head[2])
        names.append(f"final_layers.{k}.2")
    return names


def eager_capture(fn: Callable[[torch.Tensor], Outputs], static_in: torch.Tensor) -> Callable[[], Outputs]:
    """No graph: every replay runs ``fn`` again (the CPU stand-in for :func:`cuda_graph_capture`)."""
    return lambda: fn(static_in)


def cuda_graph_capture(fn: Callable[[torch.Tensor], Outputs], static_in: torch.Tensor,
                       warmup: int = 3) -> Callable[[], Outputs]:
    """Warm ``fn`` up on a side stream, capture one call into a CUDA graph, return its replay.

    The warm-up must run on a side stream before capture (cuDNN autotuning and lazy allocations are not capturable).
    The returned outputs are the graph's own buffers: the next replay overwrites them, so callers copy out first.
    """
    side = torch.cuda.Stream(static_in.device)
    side.wait_stream(torch.cuda.current_stream(static_in.device))
    with torch.cuda.stream(side):
        for _ in range(warmup):
            fn(static_in)
    torch.cuda.current_stream(static_in.device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = fn(static_in)

    def replay() -> Outputs:
        graph.replay()
        return static_out

    replay.graph = graph  # type: ignore[attr-defined]  # keeps the graph (and its memory pool) alive
    return replay


class StaticShapeRunner:
    """Copy each input into a static buffer and replay a capture of ``fn`` on it; re-capture when the shape changes.

    Args:
        fn: the network call, taking the static buffer.
        capture: :func:`cuda_graph_capture` on a GPU, :func:`eager_capture` otherwise (or a test double).
        channels_last: allocate the buffer channels-last (the layout the convolutions run fastest in).
    """

    def __init__(self, fn: Callable[[torch.Tensor], Outputs], capture: Capture = eager_capture,
                 channels_last: bool = True) -> None:
        self.fn, self.capture, self.channels_last = fn, capture, channels_last
        self.captures = 0  # how many times a graph was (re)captured: one per distinct input shape in a row
        self._key: tuple | None = None
        self._static_in: torch.Tensor | None = None
        self._replay: Callable[[], Outputs] | None = None

    def _prepare(self, x: torch.Tensor) -> None:
        self._replay = None  # drop the old graph first: its pool is released before the new capture
        fmt = torch.channels_last if self.channels_last and x.ndim == 4 else torch.contiguous_format
        self._static_in = torch.zeros(x.shape, dtype=x.dtype, device=x.device).contiguous(memory_format=fmt)
        self._static_in.copy_(x)
        self._replay = self.capture(self.fn, self._static_in)
        self._key = (tuple(x.shape), x.dtype, x.device)
        self.captures += 1

    def __call__(self, x: torch.Tensor) -> Outputs:
        if self._key != (tuple(x.shape), x.dtype, x.device):
            self._prepare(x)
        else:
            self._static_in.copy_(x)  # type: ignore[union-attr]
        return self._replay()  # type: ignore[misc]


class TorchCudaBackend(Backend):
    """InstanceHMR in torch on ``device`` with optional FP16 (FP32 islands) and CUDA graphs.

    Args:
        model: the network (moved to ``device``; modified in place when ``fp16``: islands wrapped).
        device: "cuda:N" (the GPU path) or "cpu" (the same code path in FP32 without graphs, for tests).
        fp16: autocast to FP16 with FP32 islands (CUDA only).
        cuda_graphs: capture and replay (CUDA only).
        capture: override the capture function (tests).
    """

    def __init__(self, model: InstanceHMR, device: str = "cuda:0", fp16: bool = True, cuda_graphs: bool = True,
                 capture: Capture | None = None) -> None:
        self.device = torch.device(device)
        on_cuda = self.device.type == "cuda"
        if on_cuda and not torch.cuda.is_available():
            raise BackendError("no CUDA device: torch.cuda.is_available() is False; use --device cpu")
        if not on_cuda and (fp16 or cuda_graphs) and capture is None:
            raise BackendError(f"fp16 and CUDA graphs need a CUDA device, not {device}; use the torch CPU backend")
        self.fp16 = fp16
        self.islands = add_fp32_islands(model) if fp16 else []
        self.model = model.eval().to(self.device).to(memory_format=torch.channels_last)
        if on_cuda:
            torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick the fastest kernels once
        cap = capture or (cuda_graph_capture if cuda_graphs else eager_capture)
        self.runner = StaticShapeRunner(self._forward, cap)
        self._pinned: dict[torch.dtype, torch.Tensor] = {}
        name = torch.cuda.get_device_name(self.device) if on_cuda else "cpu"
        graphs = "CUDA graph" if cuda_graphs and capture is None else "eager"
        self.spec = BackendSpec("torch", str(self.device), "fp16" if fp16 else "fp32", model.cfg.input_size,
                                note=f"{graphs}, channels-last, {name}"
                                     + (f", fp32 islands {', '.join(self.islands)}" if self.islands else ""))

    def _forward(self, x: torch.Tensor) -> Outputs:
        # cache_enabled=False: autocast's cache of FP16 weight copies is freed when the context exits, which would
        # leave a captured graph reading released memory; without the cache the casts are part of the graph
        with torch.inference_mode(), torch.autocast(device_type=self.device.type, dtype=torch.float16,
                                                    enabled=self.fp16, cache_enabled=False):
            out = self.model(x)
        return {k: out[k] for k in OUTPUT_NAMES}

    def forward_tensor(self, batch: torch.Tensor) -> Outputs:
        """float [B, 3, S, S] on the device -> the output maps on the device (graph buffers: copy before reuse)."""
        with torch.inference_mode():
            return self.runner(batch.float())

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        if self.device.type == "cuda":
            x = self._stage(x).to(self.device, non_blocking=True)
        out = self.forward_tensor(x)
        return {k: out[k].float().cpu().numpy() for k in OUTPUT_NAMES}

    def _stage(self, src: torch.Tensor) -> torch.Tensor:
        """Copy into a pinned host buffer reused while shape and dtype stay (allocating pinned memory per frame
        costs more than the copy). Safe to overwrite next call: every call ends with a synchronising copy back."""
        buf = self._pinned.get(src.dtype)
        if buf is None or buf.shape != src.shape:
            buf = self._pinned[src.dtype] = torch.empty(src.shape, dtype=src.dtype).pin_memory()
        buf.copy_(src)
        return buf

    def upload_frame(self, frame_bgr: np.ndarray) -> torch.Tensor:
        """uint8 [H, W, 3] host frame -> the same on the device (a quarter of the float bytes), via pinned memory."""
        src = torch.from_numpy(np.ascontiguousarray(frame_bgr))
        if self.device.type != "cuda":
            return src
        return self._stage(src).to(self.device, non_blocking=True)

    def frame_people(self, frame_bgr: np.ndarray, cfg: DecodeCfg | None = None) -> tuple[People, Letterbox]:
        """The GPU-resident frame path: upload once, letterbox, infer, decode on the device, copy back the people."""
        with torch.inference_mode():
            image, box = letterbox_torch(self.upload_frame(frame_bgr), self.input_size)
            out = self.forward_tensor(image[None])
            people = decode_people_torch(out["center_map"][0], out["params_maps"][0], box.input_size,
                                         cfg or DecodeCfg())
        return people, box

    def warmup(self, runs: int = 1) -> None:
        dummy = np.zeros((1, 3, self.input_size, self.input_size), np.float32)
        for _ in range(max(runs, 1)):
            self.infer(dummy)

    def close(self) -> None:
        self.runner = None  # type: ignore[assignment]  # frees the graph and its static buffers
        self.model = None  # type: ignore[assignment]
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def device_summary(device: str) -> dict[str, Any]:
    """Name, memory and capability of a CUDA device (for reports); empty off CUDA."""
    if not device.startswith("cuda") or not torch.cuda.is_available():
        return {}
    p = torch.cuda.get_device_properties(torch.device(device))
    return {"name": p.name, "memory_gib": round(p.total_memory / 2**30, 1), "capability": f"{p.major}.{p.minor}",
            "torch_cuda": torch.version.cuda}
