"""Load the base model and tokenizer named by a ModelSpec; every source returns the same LoadedModel."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..hashing import stable_hash
from ..config.spec import ModelSpec
from ..errors import AuditError
from . import default, tiny


@dataclass
class LoadedModel:
    """A base model in eval mode, its tokenizer, and an identity string that keys runs and caches."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    identity: str
    description: str


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name


def _load_hf(spec: ModelSpec) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    name = str(spec.path)
    local = Path(name).expanduser()
    if _looks_like_path(name) and not local.exists():
        raise AuditError(f"model path {name} does not exist. Give an existing folder (with config.json and *.safetensors) or a hub id.")
    source = str(local) if local.exists() else name
    if local.exists() and not (local / "config.json").is_file():
        raise AuditError(f"model folder {local} has no config.json; save the model with save_pretrained() first.")
    if local.exists():
        _refuse_remote_code(local / "config.json")
    try:
        model = AutoModelForCausalLM.from_pretrained(
            source, revision=spec.revision, trust_remote_code=False, use_safetensors=True
        )
        tokenizer = AutoTokenizer.from_pretrained(source, revision=spec.revision, trust_remote_code=False)
    except ValueError as e:  # an architecture transformers does not ship (remote code on the hub), or a bad config
        raise AuditError(f"could not load model {name!r}: {str(e).strip().splitlines()[0]} lowrank-audit never runs a "
                         "model's own code (trust_remote_code is off): use a model whose architecture transformers "
                         "ships.") from None
    except OSError as e:
        raise AuditError(
            f"could not load model {name!r}: {str(e).splitlines()[0]} "
            "(a hub id needs network access or a filled HF cache; weights must be safetensors)."
        ) from None
    return model, tokenizer


def _refuse_remote_code(config_file: Path) -> None:
    """A local folder whose model_type transformers does not ship, with its own Python code instead (auto_map), is
    refused before transformers reads it: that code is never imported, and without it the model cannot be built."""
    from transformers import CONFIG_MAPPING

    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise AuditError(f"{config_file} is not valid JSON ({e}); save the model with save_pretrained() again.") from None
    if isinstance(config, dict) and config.get("auto_map") and config.get("model_type") not in CONFIG_MAPPING:
        raise AuditError(f"model folder {config_file.parent} needs its own Python code (config.json has an auto_map "
                         f"for model_type {config.get('model_type')!r}); lowrank-audit never runs a model's code "
                         "(trust_remote_code is off). Use a model whose architecture transformers ships.")


def model_identity(spec: ModelSpec, vocabulary: list[str] | None = None) -> str:
    """The identity `load_model` gives `spec`'s model, without loading its weights (what a re-run checks first)."""
    if spec.source == "default":
        gguf = default.gguf_path()
        return f"default:{gguf.name}:{gguf.stat().st_size}"
    if spec.source == "hf":
        local = Path(str(spec.path)).expanduser()
        return str(local.resolve()) if local.exists() else f"hub:{spec.path}@{spec.revision or 'main'}"
    return f"tiny:{stable_hash([spec.tiny.model_dump(), tiny.tiny_tokenizer(vocabulary or []).get_vocab()])}"


def load_model(spec: ModelSpec, vocabulary: list[str] | None = None) -> LoadedModel:
    """Load the model of `spec`; `vocabulary` is the word list a tiny model's tokenizer must cover."""
    if spec.source == "default":
        model, tokenizer = default.load_default()
        desc = default.MODEL_NAME
    elif spec.source == "hf":
        model, tokenizer = _load_hf(spec)
        desc = str(spec.path)
    else:
        tokenizer = tiny.tiny_tokenizer(vocabulary or [])
        model = tiny.tiny_model(spec.tiny, vocab_size=len(tokenizer))
        desc = f"tiny random Llama ({spec.tiny.num_layers} layers, hidden {spec.tiny.hidden_size})"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = model.float().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return LoadedModel(model=model, tokenizer=tokenizer, identity=model_identity(spec, vocabulary), description=desc)
