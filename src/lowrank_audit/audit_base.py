"""Whether an adapter was trained on `audit`'s base model, judged by the models' own identity (architecture, sizes and
a sample of their weights), not by folder names: a local copy of the same base under another name is the same base."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from .config.spec import ModelSpec
from .models.default import MODEL_NAME

DEFAULT_BASE_NAMES = ("SmolLM2-135M-Instruct", "SmolLM2-135M")
"""The names an adapter config gives the embedded default model (`base_model_name_or_path`, without the owner)."""
SIGNATURE = ("model_type", "architectures", "vocab_size", "hidden_size", "num_hidden_layers")
"""The config.json fields two models must share to be the same model."""
SAMPLED = 64
"""Values read of each weight tensor (the start of its first row): a fine-tune or a merged adapter moves them."""


def model_folder(name: str, revision: str | None = None) -> Path | None:
    """The folder holding model `name`'s config.json on this machine (a local folder, or its snapshot in the Hugging
    Face cache, found without the network); None when this machine does not have it."""
    local = Path(name).expanduser()
    if (local / "config.json").is_file():
        return local
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(name, "config.json", revision=revision)
    except ValueError:  # not a hub id (a path elsewhere, odd characters)
        return None
    return Path(found).parent if isinstance(found, str) else None


def read_config(folder: Path) -> dict[str, Any]:
    """A model folder's config.json ({} when unreadable: nothing to compare, not an error here)."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return config if isinstance(config, dict) else {}


def weight_sample(folder: Path) -> dict[str, torch.Tensor]:
    """The first SAMPLED values of every weight tensor in the folder's safetensors files, by tensor name (read through
    the file's memory map: a large model is not loaded)."""
    out = {}
    for file in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(file), framework="pt") as f:
                for key in f.keys():
                    part = f.get_slice(key)
                    shape = part.get_shape()
                    if shape and 0 not in shape:
                        out[key] = (part[:1] if len(shape) > 1 else part[:SAMPLED]).flatten()[:SAMPLED]
        except (SafetensorError, OSError):
            continue  # unreadable: loading the base says so, with its name
    return out


def same_values(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal once both are in the coarser of their two dtypes (a bf16 base copied in fp32 is the same base)."""
    if a.shape != b.shape:
        return False
    if not (a.is_floating_point() and b.is_floating_point()):
        return a.dtype == b.dtype and torch.equal(a, b)
    dtype = a.dtype if torch.finfo(a.dtype).eps >= torch.finfo(b.dtype).eps else b.dtype
    return torch.equal(a.to(dtype), b.to(dtype))


@dataclass(frozen=True)
class KnownModel:
    """What identifies a model on this machine: the names it goes by (lower case, without owner or parent folders), its
    config.json, its folder (None: not here as a folder, e.g. the embedded GGUF or the tiny test model)."""

    names: frozenset[str]
    config: dict[str, Any]
    folder: Path | None
    shown: str

    @classmethod
    def of_base(cls, base: ModelSpec) -> "KnownModel":
        """`--base`: a local folder or hub id goes by its own name and the names its config.json records."""
        if base.source == "default":
            return cls(frozenset(n.lower() for n in DEFAULT_BASE_NAMES), {}, None, MODEL_NAME)
        if base.source != "hf":
            return cls(frozenset(), {}, None, base.source)  # tiny: a test model no adapter config names
        return cls.named(str(base.path), base.revision)

    @classmethod
    def named(cls, name: str, revision: str | None = None) -> "KnownModel":
        folder = model_folder(name, revision)
        config = read_config(folder) if folder else {}
        recorded = [config.get(k) for k in ("_name_or_path", "name_or_path")]
        names = {_short(n) for n in [name, *recorded] if isinstance(n, str) and n.strip()}
        return cls(frozenset(names), config, folder, name)

    @cached_property
    def weights(self) -> dict[str, torch.Tensor]:
        """The sample of its weights (read once: every adapter of an audit is compared with the same base)."""
        return weight_sample(self.folder) if self.folder else {}

    def differences(self, other: "KnownModel") -> str | None:
        """How `other` differs from this model, as words ('hidden_size 64, not 32'), '' when the two are shown to be the
        same model, None when this machine cannot tell (a model not here, no weights to compare)."""
        if self.folder is None or other.folder is None:
            return None
        if self.folder.resolve() == other.folder.resolve():
            return ""
        sizes = [f"{k} {other.config[k]}, not {self.config[k]}" for k in SIGNATURE
                 if self.config.get(k) is not None and other.config.get(k) is not None
                 and self.config[k] != other.config[k]]
        if sizes:
            return "; ".join(sizes)
        ours, theirs = self.weights, other.weights
        common = sorted(ours.keys() & theirs.keys())
        if not common:
            return None
        moved = [k for k in common if not same_values(ours[k], theirs[k])]
        return f"the same sizes, other weights ({len(moved)} of {len(common)} tensors differ)" if moved else ""


def _short(name: str) -> str:
    return Path(name.strip().rstrip("/\\")).name.lower()


def base_mismatch(folder: Path, config: dict[str, Any], base: KnownModel) -> str | None:
    """A warning when the adapter config's `base_model_name_or_path` (where PEFT records the model it was trained on)
    is another model than `--base`: compared by the two models' identity when this machine has both, else by the names
    they go by. None when it names this base, or nothing."""
    named = str(config.get("base_model_name_or_path") or "").strip()
    if not named:
        return None
    trained_on = KnownModel.named(named, config.get("revision"))
    differs = base.differences(trained_on)
    if differs == "":
        return None
    if differs is not None:
        return (f"adapter {folder.name} was trained on another base model: its config names {named!r} ({differs}), "
                f"this audit's base is {base.shown}; its results do not describe this base.")
    if base.names & trained_on.names:
        return None
    return (f"adapter {folder.name}: its config names base model {named!r}, this audit's base is {base.shown}, and "
            "this machine cannot compare the two; its results are only meaningful if that is the same model.")
