"""PyTorch eager backend: the reference every exported backend is compared against."""

from __future__ import annotations

import numpy as np
import torch

from ..models import InstanceHMR
from .base import OUTPUT_NAMES, Backend, BackendSpec


class TorchBackend(Backend):
    def __init__(self, model: InstanceHMR, device: str = "cpu", threads: int | None = None) -> None:
        if threads:
            torch.set_num_threads(threads)
        self.model = model.eval().to(device)
        self.device = device
        if device == "cpu":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.spec = BackendSpec("torch", device, "fp32", model.cfg.input_size,
                                note=f"eager, {torch.get_num_threads()} threads")

    @torch.inference_mode()
    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
        if self.device == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        out = self.model(x)
        return {k: out[k].float().cpu().numpy() for k in OUTPUT_NAMES}
