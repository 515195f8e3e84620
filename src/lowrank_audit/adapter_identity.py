"""What names an adapter without loading it (no torch): its weights' content digest, the method with LoRA variant its
config describes, and the suffix of an adapter audited after the intruder mitigation; `audit` and the store's
migration of old audits both read them here."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

ADAPTER_WEIGHTS = "adapter_model.safetensors"
REDUCED = "-intruders-reduced"
"""Suffix of the method name under which an adapter is audited after the intruder mitigation."""


def digest(path: Path) -> str:
    """Content hash of a weights file, so an audit re-runs when the weights change."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def method_name(config: dict[str, Any]) -> str:
    """The method an adapter config describes, with the LoRA variant it uses: PEFT records DoRA, rsLoRA scaling and
    PiSSA/OLoRA initialisation as options of peft_type LORA, so they are named here (dora, lora+rslora, lora+pissa)."""
    name = str(config.get("peft_type", "adapter")).lower()
    if name != "lora":
        return name
    name = "dora" if config.get("use_dora") else "lora"
    tags = ["rslora"] if config.get("use_rslora") else []
    init = config.get("init_lora_weights", True)
    if isinstance(init, str):
        tags.append(init.split("_")[0].lower())  # pissa, pissa_niter_16, olora, gaussian, eva, corda, loftq
    return "+".join([name, *tags])
