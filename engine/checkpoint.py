"""Loading and saving network weights.

Accepts an official InstanceHMR checkpoint as released (``{"model_state_dict": ..., optimizer/scaler states}`` with
``module.`` keys and ``_result_parser.*`` / ``_calc_loss.*`` buffers), a bare state dict (with or without
``module.``), or one of our own checkpoints (which also carry a ``model_cfg`` dict). The backbone is detected from
the weights, loading is strict, and nothing in the file is executed: ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from .errors import ModelFileError
from .models import MODELS, InstanceHMR, ModelCfg, build_model

__all__ = ["detect_cfg", "load_checkpoint", "load_network", "normalise_state_dict", "save_checkpoint"]

_DROP_PREFIXES = ("_result_parser.", "_calc_loss.")


def _read(path: Path) -> Any:
    if not path.is_file():
        raise ModelFileError(f"checkpoint not found: {path} (pass --checkpoint with a .pkl/.pth/.pt weights file)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        text = str(e)
        detail = text.split("WeightsUnpickler error:", 1)[-1].strip().splitlines()
        detail = detail[0] if detail else type(e).__name__
        raise ModelFileError(f"{path} is not a plain weights checkpoint ({detail}): it is corrupt or holds arbitrary "
                             "Python objects, which are never unpickled; re-save it with "
                             "torch.save(model.state_dict(), ...)") from e
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise ModelFileError(f"{path} could not be read as a torch checkpoint ({type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else ''}); is the file complete?") from e


def normalise_state_dict(obj: Any, source: str = "checkpoint") -> tuple[dict[str, torch.Tensor], dict | None]:
    """Unwrap containers, strip ``module.``, drop parser/loss buffers. Returns (state dict, stored model cfg)."""
    cfg = None
    if isinstance(obj, dict) and "model_state_dict" in obj:
        cfg = obj.get("model_cfg")
        obj = obj["model_state_dict"]
    elif isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelFileError(f"{source} holds no state dict (expected a dict of tensors or a dict with "
                             "'model_state_dict')")
    sd = {}
    for k, v in obj.items():
        k = k.removeprefix("module.")
        if not k.startswith(_DROP_PREFIXES):
            sd[k] = v
    return sd, cfg


def detect_cfg(sd: dict[str, torch.Tensor], source: str = "checkpoint") -> ModelCfg:
    """Tell the architecture from the weights; refuse ROMP (145-channel) and unknown layouts with a reason."""
    head1 = sd.get("final_layers.1.2.weight")
    if "params_outconv.weight" not in sd:
        if head1 is not None and head1.shape[0] in (142, 145):
            raise ModelFileError(f"{source} is a ROMP checkpoint (145-channel parameter head, all joints in 6D), not "
                                 "InstanceHMR (82 channels: 6D root + axis-angle body); its heads differ in order and "
                                 "size, so it cannot be loaded — use an InstanceHMR checkpoint")
        raise ModelFileError(f"{source} is not an InstanceHMR checkpoint (no params_outconv.weight among "
                             f"{len(sd)} keys)")
    out = sd["params_outconv.weight"].shape[0]
    if out != 79:
        hint = " (an early variant with an axis-angle root)" if out == 76 else ""
        raise ModelFileError(f"{source}: params_outconv has {out} output channels{hint}; expected 79 "
                             "(6D root 6 + body 63 + betas 10)")
    if "backbone.deconv_layers.0.weight" in sd:
        base = MODELS["resnet50"] if "backbone.layer1.0.conv3.weight" in sd else MODELS["resnet18"]
    elif "backbone.transition1.0.0.weight" in sd:
        base = MODELS["hrnet32"]
    elif "backbone.lateral.0.0.weight" in sd:
        base = MODELS["mobilenetv3"]
    else:
        raise ModelFileError(f"{source}: unknown backbone (none of resnet50/resnet18/hrnet32/mobilenetv3 keys found)")
    return base


def _cfg_from_dict(d: dict, source: str) -> ModelCfg:
    try:
        return ModelCfg(**d)
    except TypeError as e:
        raise ModelFileError(f"{source}: invalid model_cfg ({e})") from e


def load_into(model: InstanceHMR, sd: dict[str, torch.Tensor], source: str) -> None:
    """Strict load with a message that names missing, unexpected and mis-shaped keys."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shaped = [f"{k} {tuple(sd[k].shape)} != {tuple(v.shape)}" for k, v in own.items()
              if k in sd and sd[k].shape != v.shape]
    if missing or unexpected or shaped:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shaped)):
            if items:
                shown = ", ".join(items[:4]) + (f", ... (+{len(items) - 4})" if len(items) > 4 else "")
                parts.append(f"{len(items)} {label}: {shown}")
        raise ModelFileError(f"{source} does not match the {model.cfg.name} network: " + "; ".join(parts))
    model.load_state_dict(sd, strict=True)


def load_checkpoint(path: str | Path) -> tuple[InstanceHMR, dict[str, Any]]:
    """Load a network and the checkpoint's extra fields (training state etc. stay in the returned dict)."""
    path = Path(path)
    obj = _read(path)
    sd, cfg_dict = normalise_state_dict(obj, str(path))
    cfg = _cfg_from_dict(cfg_dict, str(path)) if cfg_dict else detect_cfg(sd, str(path))
    model = build_model(cfg)
    load_into(model, sd, str(path))
    extra = {k: v for k, v in obj.items() if k != "model_state_dict"} if isinstance(obj, dict) else {}
    return model.eval(), extra


def load_network(path: str | Path) -> InstanceHMR:
    """The engine contract: an InstanceHMR ``torch.nn.Module`` in eval mode, weights loaded strictly."""
    return load_checkpoint(path)[0]


def save_checkpoint(model: InstanceHMR, path: str | Path, **extra: Any) -> Path:
    """Save ``{"model_state_dict", "model_cfg", **extra}``; loadable with ``weights_only=True``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"model_state_dict": model.state_dict(), "model_cfg": model.cfg.to_dict(), **extra}, tmp)
    tmp.replace(path)  # atomic: a crash mid-save never leaves a truncated checkpoint
    return path
