"""galore-torch's GaLoreAdamW with a checkpointable state: its per-matrix projector objects become their matrix.

Imported only when a galore run starts (galore-torch imports bitsandbytes).
"""

from __future__ import annotations

from typing import Any

from galore_torch import GaLoreAdamW
from galore_torch.galore_projector import GaLoreProjector


class CheckpointableGaLoreAdamW(GaLoreAdamW):
    """GaLoreAdamW whose state_dict holds tensors and numbers only, so a checkpoint loads with weights_only=True."""

    def state_dict(self) -> dict[str, Any]:
        """torch's optimizer state with each GaLoreProjector replaced by {"ortho_matrix": its current projection}."""
        packed = super().state_dict()
        packed["state"] = {index: {**s, "projector": {"ortho_matrix": s["projector"].ortho_matrix}} if "projector" in s else s
                           for index, s in packed["state"].items()}
        return packed

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load torch's optimizer state, then rebuild each projector from its group's settings and saved matrix."""
        super().load_state_dict(state_dict)
        for group in self.param_groups:
            for p in group["params"]:
                saved = self.state.get(p, {}).get("projector")
                if isinstance(saved, dict):
                    projector = GaLoreProjector(group["rank"], update_proj_gap=group["update_proj_gap"],
                                                scale=group["scale"], proj_type=group["proj_type"])
                    projector.ortho_matrix = saved["ortho_matrix"]
                    self.state[p]["projector"] = projector
