"""`audit`: evaluate adapters trained elsewhere (standard PEFT folders) and an optional full fine-tune
reference with every metric of a task, into the same store and report as `run`.

The base model is loaded once; each adapter is attached to a copy, checked to fit the base and to change
its outputs, observed and scored against the base and the reference. A re-run skips finished audits.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict
from safetensors import SafetensorError, safe_open
from torch import nn

from .config.load import validate_options
from .config.spec import ModelSpec
from .errors import AuditError
from .evaluate import ObservationCache, Runner
from .evaluate.cache import cache_key
from .methods.full import FullFineTuning, FullOptions
from .models import load_model, resolve_precision
from .plan import BASE, REFERENCE, run_id
from .store import RunRecord, Store
from .store.lock import OutputLock
from .run_step import Measured, References, measure_model, score_run
from .sweep import SweepResult, check_writable
from .tasks import TASKS, Task, task_vocabulary

ADAPTER_WEIGHTS = "adapter_model.safetensors"


class AuditSpec(BaseModel):
    """What to audit: a base model, adapter folders, an optional full fine-tune folder, one task."""

    model_config = ConfigDict(extra="forbid")

    base: ModelSpec
    adapters: list[Path]
    reference: Path | None = None
    task: str
    task_options: dict[str, Any] = {}
    seed: int = 0
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    eval_batch_size: int = 32


def base_spec(text: str) -> ModelSpec:
    """`--base`: 'default' (embedded SmolLM2), 'tiny' (the test model), or a HF hub id / local folder."""
    if not text.strip():
        raise AuditError("--base is empty: give 'default', a hub id or a local model folder.")
    return ModelSpec(source=text) if text in ("default", "tiny") else ModelSpec(source="hf", path=text)


def _digest(path: Path) -> str:
    """Content hash of a weights file, so an audit re-runs when the adapter changes."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def _adapter_config(folder: Path) -> dict[str, Any]:
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


def check_safetensors(path: Path) -> None:
    """Refuse a weights file that does not read back whole (truncated, damaged), naming it: opening it makes
    safetensors check its header and that the file holds every byte the header lists."""
    try:
        with safe_open(str(path), framework="pt"):
            pass
    except (SafetensorError, OSError) as e:
        raise AuditError(f"{path} is damaged or truncated ({e}); copy or save it again.") from None


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


def load_adapter(base: nn.Module, folder: Path) -> nn.Module:
    """Attach a PEFT adapter to a copy of `base`; a clear error when it was trained for another model."""
    from peft import PeftModel

    _adapter_config(folder)
    with safe_open(str(folder / ADAPTER_WEIGHTS), framework="pt") as f:
        if not list(f.keys()):
            raise AuditError(f"adapter {folder} holds no weights.")
    try:
        return PeftModel.from_pretrained(copy.deepcopy(base), folder)
    except (ValueError, RuntimeError, KeyError) as e:
        raise AuditError(f"adapter {folder} does not fit this base model (was it trained on another one?): "
                         f"{str(e).strip().splitlines()[0]}") from None


def load_reference(base: nn.Module, folder: Path) -> nn.Module:
    if not (folder / "model.safetensors").is_file():
        raise AuditError(f"reference {folder} has no model.safetensors (a full fine-tune saved with save_pretrained()).")
    check_safetensors(folder / "model.safetensors")
    try:
        return FullFineTuning(FullOptions()).load(copy.deepcopy(base), folder)
    except (ValueError, RuntimeError) as e:
        raise AuditError(f"reference {folder} does not fit this base model: {str(e).splitlines()[0]}") from None


class Audit:
    """Evaluate existing weights the way a sweep evaluates trained ones."""

    def __init__(self, spec: AuditSpec, out_dir: Path, progress: bool, log: Callable[[str], None]) -> None:
        self.spec, self.out_dir, self.log = spec, out_dir, log
        for folder in spec.adapters:
            _adapter_config(folder)
        self.precision = resolve_precision(spec.precision)
        options = validate_options(TASKS.get(spec.task).Options, spec.task_options, "audit", "task_options")
        self.store = Store.in_dir(out_dir)
        log("loading base model ...")
        self.loaded = load_model(spec.base, task_vocabulary())
        desc = f"audit on {self.loaded.identity} ({self.precision})"
        self.store.bind_experiment(hashlib.sha256(desc.encode()).hexdigest()[:16], desc)
        self.task: Task = TASKS.get(spec.task)(options, self.loaded.tokenizer)
        self.runner = Runner(self.loaded.tokenizer, self.precision, spec.eval_batch_size, progress)
        self.cache = ObservationCache(out_dir / "cache")
        self.common = {"model": self.loaded.identity, "precision": self.precision, "seed": spec.seed,
                       "task": {"name": spec.task, "options": options.model_dump()}}

    def run(self) -> SweepResult:
        result = SweepResult(self.out_dir, planned=1 + len(self.spec.adapters) + bool(self.spec.reference))
        base = self.loaded.model
        base_obs = self.cache.get_or_compute(cache_key("base", self.loaded.identity, self.precision, self.task.fingerprint()),
                                             lambda: self.task.observe_base(self.runner, base))
        self.task.bind(base_obs)
        refs = References(base_obs)
        if self.spec.reference is not None:
            folder = self.spec.reference.resolve()
            digest = _digest(folder / "model.safetensors")
            key = cache_key("reference", digest, self.task.fingerprint(), self.precision)
            obs, ref_spectra, _ = measure_model(
                load_reference(base, folder), base, base_obs, f"reference {folder}",
                lambda m: self.cache.get_or_compute(key, lambda: self.task.observe(self.runner, m)))
            measured = Measured(obs, ref_spectra)
            refs = refs.with_reference(measured)
            self._write(result, REFERENCE, None, {"reference": str(folder), "digest": digest}, measured, refs)
        self._write(result, BASE, None, {}, Measured(), refs)
        for folder in (f.resolve() for f in self.spec.adapters):
            config = _adapter_config(folder)
            digest = _digest(folder / ADAPTER_WEIGHTS)
            rank = config.get("r")
            method = method_name(config)
            source = {"adapter": str(folder), "digest": digest}
            if self.store.status(self._run_id(method, source)) == "finished":
                result.skipped += 1
                continue
            self.log(f"audit {folder}")
            obs, own_spectra, _ = measure_model(load_adapter(base, folder), base, base_obs, f"adapter {folder}",
                                                lambda m: self.task.observe(self.runner, m))
            self._write(result, method, rank, source, Measured(obs, own_spectra), refs)
        return result

    def _config(self, method: str, source: dict[str, Any]) -> dict[str, Any]:
        return {**self.common, "method": {"name": method}, "audit": source}

    def _run_id(self, method: str, source: dict[str, Any]) -> str:
        return run_id(self._config(method, source))

    def _write(self, result: SweepResult, method: str, rank: int | None, source: dict[str, Any], measured: Measured,
               refs: References) -> None:
        """Score one audited model (the run step's scoring, as in a sweep) and store it, unless it is already stored."""
        config = self._config(method, source)
        rid = run_id(config)
        if self.store.status(rid) == "finished":
            result.skipped += 1
            return
        self.store.start_run(RunRecord(rid, self.spec.task, method, rank, self.spec.seed, config))
        measured.extra["artifact"] = source.get("adapter") or source.get("reference")
        rows, extra = score_run(self.task, measured, refs, self.spec.seed, method == REFERENCE, rank)
        self.store.finish_run(rid, rows, **extra)
        result.finished += 1


def run_audit(spec: AuditSpec, out_dir: str | Path, progress: bool = True,
              log: Callable[[str], None] = print) -> SweepResult:
    """Audit `spec.adapters` (and the reference) into `out_dir`; one process at a time per folder."""
    check_writable(Path(out_dir))
    with OutputLock(out_dir):
        return Audit(spec, Path(out_dir), progress, log).run()
