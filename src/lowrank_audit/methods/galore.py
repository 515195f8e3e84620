"""`galore`: full-weight training with GaLore's optimizer (Adam moments kept on a rank-r projection of the
gradient of every 2-D weight matrix in the transformer blocks, AdamW on the rest); the `galore-torch` package.

Shared with `frugal`: the same matrices are projected, and the trained weights save as a full fine-tune.
"""

from __future__ import annotations


import torch
from torch import nn

from ..errors import AuditError
from .full import FullFineTuning
from .galore_card import GaLoreCard


class ProjectedOptimizerMethod(FullFineTuning):
    """Full-weight training whose optimizer keeps its state on a rank-r projection of each block matrix."""

    @property
    def rank(self) -> int:
        return self.options.rank

    def check(self, model: nn.Module) -> None:
        """Reject a rank larger than a projected matrix's smaller dimension."""
        for name, p in block_matrices(model).items():
            if self.options.rank > min(p.shape):
                raise AuditError(
                    f"{self.name} rank {self.options.rank} is larger than matrix {name} ({p.shape[0]} x {p.shape[1]}) "
                    f"allows (at most {min(p.shape)}). Use a rank <= {min(p.shape)}."
                )

    def param_groups(self, model: nn.Module, **projected: object) -> list[dict]:
        """Two groups: the block matrices (with the projection settings `projected`) and every other weight."""
        matrices = block_matrices(model)
        chosen = {id(p) for p in matrices.values()}
        rest = [p for p in model.parameters() if p.requires_grad and id(p) not in chosen]
        return [{"params": rest}, {"params": list(matrices.values()), **projected}]


def block_matrices(model: nn.Module) -> dict[str, nn.Parameter]:
    """Weights of the Linear layers other than the output head (the transformer blocks' matrices), by module name."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return {name: m.weight for name, m in model.named_modules() if isinstance(m, nn.Linear) and m is not head}


class GaLore(GaLoreCard, ProjectedOptimizerMethod):
    def optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        from .optim.galore import CheckpointableGaLoreAdamW  # imports bitsandbytes: only when a galore run starts

        o = self.options
        groups = self.param_groups(model, rank=o.rank, update_proj_gap=o.update_interval, scale=o.scale, proj_type="std")
        return CheckpointableGaLoreAdamW(groups, lr=o.lr, weight_decay=o.weight_decay, no_deprecation_warning=True)
