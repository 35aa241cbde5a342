"""Table-4-style ablation variants of the network, without touching engine/ (same weights layout).

* ``full``: the InstanceHMR network as shipped.
* ``no_pe``: positional encoding removed from the centre ID map (buffer zeroed).
* ``baseline``: no instance branches feeding the parameter branch (ID maps replaced by zeros) and no contrastive
  loss, i.e. ROMP + joint heatmaps.
The variant is stored in the checkpoint (``ablation``) and must be re-applied after loading (``apply_variant``).
"""

from __future__ import annotations

import torch

from engine.models.instancehmr import InstanceHMR

VARIANTS = ("full", "no_pe", "baseline")


def _baseline_head(self: InstanceHMR, x: torch.Tensor, return_id_maps: bool = False) -> dict[str, torch.Tensor]:
    center_map = self.final_layers[1](x)
    cam = self.final_layers[2](x)
    cam = torch.cat((torch.pow(1.1, cam[:, :1]), cam[:, 1:]), 1)
    joint_maps = self.final_layers[3](x)
    xp = self.params_trans1(x)
    zeros = center_map.new_zeros(center_map.shape[0], self.cfg.id_dim, *center_map.shape[-2:])
    xc = self.params_trans_c(torch.cat([xp, center_map, zeros], 1))
    xj = self.params_trans_j(torch.cat([xp, joint_maps, zeros], 1))
    xp = self.params_resblock2(self.params_resblock1(torch.cat([xc, xj], 1)))
    return {"center_map": center_map, "joint_maps": joint_maps,
            "params_maps": torch.cat([cam, self.params_outconv(xp)], 1)}


def apply_variant(model: InstanceHMR, variant: str) -> InstanceHMR:
    """Switch a freshly built/loaded model to an ablation variant in place."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown ablation variant {variant!r}; expected one of {VARIANTS}")
    if variant == "no_pe":
        model.pos_encoding.zero_()
    elif variant == "baseline":
        model.forward_head = _baseline_head.__get__(model, type(model))  # type: ignore[method-assign]
    return model
