"""FRUGAL (Zmushko et al., 2024): gradient splitting into a state-full and a state-free part.

For a matrix parameter in a group with a `rank`, the gradient G is projected onto a rank-r subspace along
its smaller dimension; Adam runs on the projection (moments of size max(m, n) x r) and the update is
projected back; the residual G - P(G) gets a signSGD step with no state. The subspace is the top-r
singular vectors of G ("svd"), a random orthonormal basis ("random"), or a block of r consecutive
coordinates rotating through the dimension ("blocks"), recomputed every `update_interval` steps; the
Adam moments restart with each new subspace. Groups without `rank` get plain Adam.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import torch

PROJECTIONS = ("svd", "random", "blocks")


class Frugal(torch.optim.Optimizer):
    """Adam on a low-dimensional projection of each gradient, signSGD on the residual (decoupled weight decay)."""

    def __init__(self, params: Iterable, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, sign_lr: float | None = None, seed: int = 0) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay,
                                  "sign_lr": lr if sign_lr is None else sign_lr})
        for group in self.param_groups:
            if "rank" in group and group.setdefault("projection", "svd") not in PROJECTIONS:
                raise ValueError(f"projection {group['projection']!r}: use one of {', '.join(PROJECTIONS)}")
            group.setdefault("update_interval", 200)
        self.generator = torch.Generator().manual_seed(seed)

    def state_dict(self) -> dict[str, Any]:
        """torch's optimizer state plus the generator of the random subspaces (so a resumed run draws the same ones)."""
        return {**super().state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what `state_dict` wrote: torch's optimizer state and the subspace generator."""
        state_dict = dict(state_dict)
        if "generator" not in state_dict:
            raise ValueError("Frugal state_dict has no 'generator' state; it was not written by Frugal.state_dict()")
        self.generator.set_state(state_dict.pop("generator").cpu())  # accelerate may have moved it to the device
        super().load_state_dict(state_dict)

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if group["weight_decay"]:
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                if "rank" in group and p.ndim == 2:
                    self._split_step(p, p.grad, state, group)
                else:
                    p.add_(self._adam(p.grad, state, group), alpha=-group["lr"])
        return loss

    def _adam(self, grad: torch.Tensor, state: dict, group: dict) -> torch.Tensor:
        """The Adam direction for `grad`, updating the moments in `state` (created at zero if absent)."""
        if "exp_avg" not in state:
            state["exp_avg"], state["exp_avg_sq"], state["adam_step"] = torch.zeros_like(grad), torch.zeros_like(grad), 0
        beta1, beta2 = group["betas"]
        state["adam_step"] += 1
        state["exp_avg"].mul_(beta1).add_(grad, alpha=1 - beta1)
        state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        m_hat = state["exp_avg"] / (1 - beta1 ** state["adam_step"])
        v_hat = state["exp_avg_sq"] / (1 - beta2 ** state["adam_step"])
        return m_hat / (v_hat.sqrt() + group["eps"])

    def _split_step(self, p: torch.Tensor, grad: torch.Tensor, state: dict, group: dict) -> None:
        tall = grad.shape[0] >= grad.shape[1]
        g = grad if tall else grad.T  # project along the smaller dimension: g is (big x small)
        step = state.get("step", 0)
        if step % group["update_interval"] == 0:
            state["basis"] = self._basis(g, group, step)
            for key in ("exp_avg", "exp_avg_sq", "adam_step"):
                state.pop(key, None)
        state["step"] = step + 1
        basis = state["basis"]
        if group["projection"] == "blocks":
            low = g[:, basis]
            back = torch.zeros_like(g)
            back[:, basis] = self._adam(low, state, group)
            residual = g.clone()
            residual[:, basis] = 0
        else:
            low = g @ basis
            back = self._adam(low, state, group) @ basis.T
            residual = g - low @ basis.T
        update = group["lr"] * back + group["sign_lr"] * residual.sign()
        p.sub_(update if tall else update.T)

    def _basis(self, g: torch.Tensor, group: dict, step: int) -> torch.Tensor:
        """Orthonormal (small x r) basis, or r column indices for "blocks"."""
        rank, small = group["rank"], g.shape[1]
        if group["projection"] == "svd":
            return torch.linalg.svd(g.float(), full_matrices=False)[2][:rank].T.to(g.dtype)
        if group["projection"] == "random":
            gauss = torch.randn(small, rank, generator=self.generator).to(g.device, torch.float32)
            return torch.linalg.qr(gauss)[0].to(g.dtype)
        start = (step // group["update_interval"]) * rank
        return (torch.arange(start, start + rank, device=g.device) % small)
