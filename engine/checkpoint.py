"""Loading and saving network weights.

Accepts an official InstanceHMR checkpoint as released (``{"model_state_dict": ..., optimizer/scaler states}`` with
``module.`` keys and ``_result_parser.*`` / ``_calc_loss.*`` buffers), a bare state dict (with or without
``module.``), or one of our own checkpoints (which also carry a ``model_cfg`` dict). The backbone is detected from
the weights, loading is strict, and nothing in the file is executed: ``torch.load(weights_only=True)``.

:func:`load_network` also loads the two 2D-pose-guided systems from their released files: 3DCrowdNet
(``{"epoch", "network", "optimizer"}``) and JOTR (a flat ``module.`` state dict); :func:`detect_system` tells them
apart from the keys.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from .errors import ConfigError, ModelFileError
from .models import JOTR, MODELS, CrowdNet, InstanceHMR, ModelCfg, build_model

__all__ = ["SYSTEMS", "checkpoint_system", "detect_cfg", "detect_system", "load_checkpoint", "load_network",
           "normalise_state_dict", "save_checkpoint"]

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
    elif isinstance(obj, dict) and isinstance(obj.get("network"), dict):  # 3DCrowdNet/JOTR training snapshots
        obj = obj["network"]
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


def _cfg_from_dict(d: Any, source: str) -> ModelCfg:
    """The stored ``model_cfg``, validated: it is file content, so a bad one is a ModelFileError, not a crash."""
    hint = "fix or remove model_cfg (without it the architecture is detected from the weights)"
    if not isinstance(d, dict):
        raise ModelFileError(f"{source}: invalid model_cfg (a {type(d).__name__}, expected a dict); {hint}")
    known = set(ModelCfg.__dataclass_fields__)
    unknown = sorted(str(k) for k in d if k not in known)
    if unknown:
        raise ModelFileError(f"{source}: invalid model_cfg (unknown keys: {', '.join(unknown)}); {hint}")
    missing = [k for k in ("name", "backbone") if k not in d]
    if missing:
        raise ModelFileError(f"{source}: invalid model_cfg (missing {', '.join(missing)}); {hint}")
    try:
        return ModelCfg(**d)
    except (TypeError, ValueError) as e:
        raise ModelFileError(f"{source}: invalid model_cfg ({e}); {hint}") from e


def load_into(model: torch.nn.Module, sd: dict[str, torch.Tensor], source: str, network: str | None = None) -> None:
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
        name = network or model.cfg.name
        raise ModelFileError(f"{source} does not match the {name} network: " + "; ".join(parts))
    model.load_state_dict(sd, strict=True)


SYSTEMS = {"instancehmr": "InstanceHMR", "crowdnet": "3DCrowdNet", "jotr": "JOTR"}
_SYSTEM_MARKERS = (("jotr", ("transformer.", "refine_3d.")), ("crowdnet", ("rotation_net.", "position_net.")))
# Official tensors the inference never reads: the SMPL layer's buffers (the body model lives in engine/body) and the
# VPoser v1 encoder (only its decoder turns the predicted latent into joint rotations).
_POSEGUIDED_DROP = ("human_model_layer.", "vposer.vposer.bodyprior_enc_")


def detect_system(sd: dict[str, torch.Tensor]) -> str:
    """Which system a (``module.``-stripped) state dict belongs to: "jotr", "crowdnet" or "instancehmr".

    Pose-guided systems are told by their unique top-level modules; anything else is treated as InstanceHMR, whose
    detection (:func:`detect_cfg`) names ROMP and unknown layouts.
    """
    for system, prefixes in _SYSTEM_MARKERS:
        if any(k.startswith(prefixes) for k in sd):
            return system
    return "instancehmr"


def _check_system(found: str, wanted: str | None, source: str) -> None:
    if wanted is not None and wanted not in SYSTEMS:
        raise ConfigError(f"unknown network system {wanted!r}: use one of {', '.join(SYSTEMS)}")
    if wanted is None or wanted == found:
        return
    raise ModelFileError(f"{source} holds {SYSTEMS[found]} weights, not {SYSTEMS[wanted]}: give a {SYSTEMS[wanted]} "
                         f"checkpoint here, or select the {SYSTEMS[found]} model for this file")


def _load_poseguided(system: str, sd: dict[str, torch.Tensor], source: str) -> torch.nn.Module:
    model = CrowdNet() if system == "crowdnet" else JOTR()
    load_into(model, {k: v for k, v in sd.items() if not k.startswith(_POSEGUIDED_DROP)}, source, SYSTEMS[system])
    return model.eval()


def load_checkpoint(path: str | Path) -> tuple[InstanceHMR, dict[str, Any]]:
    """Load an InstanceHMR network and the checkpoint's extra fields (training state etc. stay in the returned dict).

    Training and evaluation use this; a pose-guided checkpoint is refused with a reason (see :func:`load_network`).
    """
    path = Path(path)
    obj = _read(path)
    sd, cfg_dict = normalise_state_dict(obj, str(path))
    _check_system(detect_system(sd), "instancehmr", str(path))
    return _load_instancehmr(obj, sd, cfg_dict, str(path))


def _load_instancehmr(obj: Any, sd: dict[str, torch.Tensor], cfg_dict: Any,
                      source: str) -> tuple[InstanceHMR, dict[str, Any]]:
    cfg = _cfg_from_dict(cfg_dict, source) if cfg_dict else detect_cfg(sd, source)
    model = build_model(cfg)
    load_into(model, sd, source)
    extra = {k: v for k, v in obj.items() if k != "model_state_dict"} if isinstance(obj, dict) else {}
    return model.eval(), extra


def load_network(path: str | Path, system: str | None = None) -> torch.nn.Module:
    """The engine contract: a network in eval mode, weights loaded strictly, of the system the weights belong to.

    InstanceHMR (:class:`InstanceHMR`), 3DCrowdNet (:class:`CrowdNet`: ``{"network": {"module." ...}}`` as released)
    or JOTR (:class:`JOTR`: a flat ``module.`` state dict as released). ``system`` ("instancehmr", "crowdnet",
    "jotr") refuses a checkpoint of another system with a one-line reason. For the pose-guided systems the SMPL
    layer buffers and the VPoser encoder are dropped (inference never reads them); every other key must match.
    """
    path = Path(path)
    obj = _read(path)
    sd, cfg_dict = normalise_state_dict(obj, str(path))
    found = detect_system(sd)
    _check_system(found, system, str(path))
    if found == "instancehmr":
        return _load_instancehmr(obj, sd, cfg_dict, str(path))[0]
    return _load_poseguided(found, sd, str(path))


def checkpoint_system(path: str | Path) -> str:
    """Which system a weights file or exported artifact runs ("instancehmr", "crowdnet", "jotr"), without building
    the network: the app picks the model kind from the file the user gives."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".engine":
        return "instancehmr"
    if suffix == ".onnx":
        import onnx

        from .runtime.meta import META_KEY

        try:
            proto = onnx.load(str(path), load_external_data=False)
        except Exception as e:  # protobuf raises DecodeError and friends
            raise ModelFileError(f"{path} is not a readable ONNX model ({type(e).__name__})") from e
        meta = next((p.value for p in proto.metadata_props if p.key == META_KEY), None)
        if meta is None:
            return "instancehmr"  # the runtime names what is missing when it opens the file
        import json

        try:
            system = json.loads(meta).get("model_cfg", {}).get("system", "instancehmr")
        except (json.JSONDecodeError, AttributeError) as e:
            raise ModelFileError(f"{path}: unreadable {META_KEY!r} metadata; re-export it") from e
        if system not in SYSTEMS:
            raise ModelFileError(f"{path} was exported for an unknown system {system!r}; re-export it")
        return system
    sd, _ = normalise_state_dict(_read(path), str(path))
    return detect_system(sd)


def save_checkpoint(model: InstanceHMR, path: str | Path, **extra: Any) -> Path:
    """Save ``{"model_state_dict", "model_cfg", **extra}``; loadable with ``weights_only=True``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"model_state_dict": model.state_dict(), "model_cfg": model.cfg.to_dict(), **extra}, tmp)
    tmp.replace(path)  # atomic: a crash mid-save never leaves a truncated checkpoint
    return path
