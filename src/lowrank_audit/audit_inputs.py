"""What `audit` knows of an adapter folder before it loads any model: its config, method and variant, real rank,
content digest and name; refused when it cannot be right (damaged, zero update), flagged when made for another base."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from .adapter_identity import ADAPTER_WEIGHTS, digest, method_name
from .audit_base import KnownModel, base_mismatch
from .errors import AuditError

UPDATE_FACTORS = ("lora_B", "lora_E")
"""Factors of a LoRA-family update (B A; AdaLoRA's B (E * A)): when every tensor of one kind is zero, dW = 0."""


def check_safetensors(path: Path) -> None:
    """Refuse a weights file that does not read back whole (truncated, damaged), naming it: opening it makes
    safetensors check its header and that the file holds every byte the header lists."""
    try:
        with safe_open(str(path), framework="pt"):
            pass
    except (SafetensorError, OSError) as e:
        raise AuditError(f"{path} is damaged or truncated ({e}); copy or save it again.") from None


def adapter_config(folder: Path) -> dict[str, Any]:
    """The adapter folder's config, once its weights file is known to read back (a truncated copy is refused here)."""
    if not (folder / "adapter_config.json").is_file():
        if (folder / "config.json").is_file() and any(folder.glob("*.safetensors")):
            raise AuditError(f"{folder} looks like a full model (config.json and safetensors weights, no "
                             "adapter_config.json), not a PEFT adapter: pass a full fine-tune as --reference.")
        raise AuditError(f"{folder} is not a PEFT adapter folder (no adapter_config.json). Save adapters with save_pretrained().")
    if not (folder / ADAPTER_WEIGHTS).is_file():
        raise AuditError(f"{folder} has no {ADAPTER_WEIGHTS}; only safetensors weights are loaded (re-save with safe_serialization=True).")
    check_safetensors(folder / ADAPTER_WEIGHTS)
    try:
        config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise AuditError(f"{folder / 'adapter_config.json'} is not valid JSON ({e}); re-save the adapter.") from None
    if not isinstance(config, dict):
        raise AuditError(f"{folder / 'adapter_config.json'} holds no JSON object; re-save the adapter.")
    return config


def real_rank(config: dict[str, Any], weights: dict[str, torch.Tensor]) -> int | None:
    """The largest rank any adapted module has in the saved weights: LoRA's rows of lora_A (a rank_pattern may give
    modules their own r); AdaLoRA's non-zero entries of lora_E (its budget pruned the others; PEFT saves them zeroed or
    cut to the final rank_pattern), not its initial r. Other methods: the config's r, if any."""
    singular = [int(t.count_nonzero()) for k, t in weights.items() if "lora_E" in k]
    if singular:
        return max(singular)
    rows = [t.shape[0] for k, t in weights.items() if "lora_A" in k and t.dim() == 2]
    return max(rows) if rows else config.get("r")


def refuse_zero_update(folder: Path, weights: dict[str, torch.Tensor]) -> None:
    """An adapter whose update is exactly zero (every lora_B, or every lora_E, all zeros: a zero-initialised adapter
    never trained, or a failed save) is refused here, before any model is loaded or evaluated. DoRA is left to the
    output probe: its magnitude vector changes the model even with B = 0."""
    if any("magnitude" in k for k in weights):
        return
    for factor in UPDATE_FACTORS:
        tensors = [t for k, t in weights.items() if factor in k]
        if tensors and not any(bool(t.any()) for t in tensors):
            raise AuditError(f"adapter {folder}: every {factor} in {ADAPTER_WEIGHTS} is zero, so it changes nothing "
                             "(a zero-initialised adapter never trained, or a failed save); give the trained adapter.")


@dataclass(frozen=True)
class AdapterInfo:
    """One adapter to audit: its identity (name, method with variant, real rank, weights digest) and its warnings."""

    folder: Path
    name: str
    method: str
    rank: int | None
    digest: str
    config: dict[str, Any]
    warnings: tuple[str, ...] = ()

    @property
    def source(self) -> dict[str, Any]:
        """What the audited run's id is made of: which adapter (name, folder) with which weights."""
        return {"adapter": str(self.folder), "name": self.name, "digest": self.digest}


def inspect_adapter(folder: Path, name: str, base: KnownModel) -> AdapterInfo:
    """Read an adapter folder (config and weights, no model): refused if damaged or zero, flagged if for another base."""
    folder = folder.resolve()
    config = adapter_config(folder)
    with safe_open(str(folder / ADAPTER_WEIGHTS), framework="pt") as f:
        weights = {k: f.get_tensor(k) for k in f.keys()}
    if not weights:
        raise AuditError(f"adapter {folder} holds no weights.")
    refuse_zero_update(folder, weights)
    warning = base_mismatch(folder, config, base)
    return AdapterInfo(folder, name, method_name(config), real_rank(config, weights), digest(folder / ADAPTER_WEIGHTS),
                       config, (warning,) if warning else ())


def adapter_names(folders: list[Path], names: list[str]) -> list[str]:
    """Each adapter's name: the one given (`--name`, in order) or its folder's name; two adapters never share one."""
    if names and len(names) != len(folders):
        raise AuditError(f"{len(names)} --name for {len(folders)} --adapter: give one --name per adapter, in the same "
                         "order, or none (each adapter is then named by its folder).")
    chosen = names or [f.resolve().name for f in folders]
    seen: dict[str, Path] = {}
    for folder, name in zip(folders, chosen):
        if not name.strip():
            raise AuditError(f"the name of adapter {folder} is empty; give it a --name.")
        if name in seen:
            raise AuditError(f"two adapters are named {name!r} ({seen[name]} and {folder}); give each a --name, in the "
                             "order of --adapter.")
        seen[name] = folder
    return chosen
