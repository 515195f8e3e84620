"""Training checkpoints: a long run resumes from its last saved step instead of from zero.

`<run folder>/checkpoint/step-<k>/` holds
  trainable.safetensors  the trainable parameters, by name
  optimizer.pt           the optimizer's state_dict (tensors, numbers, strings, lists and dicts only)
  state.pt               step, seconds, tokens, losses, torch RNG states, the method's own state (Method.state_dict)
It is written as `.tmp-step-<k>` and renamed when complete, so a kill never leaves half a checkpoint behind a
valid name; older checkpoints are removed after the rename. The .pt files load with torch.load(weights_only=True):
reading a checkpoint never unpickles code. The data order is not stored: it is rebuilt from the seed.

Why not accelerate's save_state / load_state: they save the whole model (a LoRA checkpoint would weigh as much as
the base model), pickle the optimizer state as it is (GaLore's holds projector objects), load registered custom
objects with weights_only=False, write in place (a kill leaves a half-written folder), and a failed RNG restore is
only logged at info level, so a resumed run could silently differ from an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import AuditError
from ..methods.base import Method

FILES = ("trainable.safetensors", "optimizer.pt", "state.pt")
STEP = re.compile(r"step-(\d+)")
TMP = ".tmp-"
TRAINED = "trained.json"

logger = logging.getLogger(__name__)


class UnusableCheckpoint(Exception):
    """A checkpoint that does not read back whole or does not fit the model; it is skipped, never half loaded."""


@dataclass
class Checkpoint:
    """Everything a resumed run needs to continue exactly where the saved one stopped."""

    step: int
    seconds: float
    tokens: int
    losses: list[float]
    trainable: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    method: dict[str, Any]
    rng: dict[str, Any]
    path: Path | None = None


def trainable_named(model: nn.Module) -> dict[str, nn.Parameter]:
    """The parameters that receive gradients, by name (what a checkpoint saves of the model)."""
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def capture(model: nn.Module, optimizer: torch.optim.Optimizer, method: Method, step: int, seconds: float,
            tokens: int, losses: list[float]) -> Checkpoint:
    """The training state after `step` steps (tensors are the live ones: write it before the next step)."""
    rng = {"cpu": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}
    return Checkpoint(step, seconds, tokens, list(losses), {k: p.detach() for k, p in trainable_named(model).items()},
                      optimizer.state_dict(), method.state_dict(model), rng)


def save(folder: Path, checkpoint: Checkpoint) -> Path:
    """Write `checkpoint` atomically as `folder/step-<k>` and remove every older checkpoint or leftover there."""
    _check_plain(checkpoint.optimizer, "the optimizer's state_dict")
    _check_plain(checkpoint.method, "the method's state_dict")
    name = f"step-{checkpoint.step:08d}"
    tmp, final = folder / (TMP + name), folder / name
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in checkpoint.trainable.items()}, str(tmp / "trainable.safetensors"))
    torch.save(checkpoint.optimizer, tmp / "optimizer.pt")
    torch.save({"step": checkpoint.step, "seconds": checkpoint.seconds, "tokens": checkpoint.tokens,
                "losses": checkpoint.losses, "rng": checkpoint.rng, "method": checkpoint.method}, tmp / "state.pt")
    shutil.rmtree(final, ignore_errors=True)  # only there if it was found unusable and skipped on resume
    os.rename(tmp, final)
    for other in folder.iterdir():
        if other != final:
            shutil.rmtree(other, ignore_errors=True)
    return final


def load_latest(folder: Path, model: nn.Module, steps: int) -> Checkpoint | None:
    """The newest checkpoint in `folder` that reads back whole and fits `model` and a budget of `steps`; any newer
    one that does not is skipped with a log line saying why. None when there is none (train from step 0)."""
    if not folder.is_dir():
        return None
    found = sorted(((int(m.group(1)), p) for p in folder.iterdir() if (m := STEP.fullmatch(p.name)) and p.is_dir()),
                   reverse=True)
    for step, path in found:
        try:
            checkpoint = _read(path)
            _check_fits(checkpoint, step, model, steps)
            return checkpoint
        except UnusableCheckpoint as e:
            logger.info(f"ignoring checkpoint {path}: {e}")
    return None


def restore(checkpoint: Checkpoint, model: nn.Module, optimizer: torch.optim.Optimizer, method: Method) -> None:
    """Put a checkpoint (checked by `load_latest`) into the live model, optimizer, method and torch RNG."""
    try:
        optimizer.load_state_dict(checkpoint.optimizer)  # first: torch checks the groups before changing anything
        method.load_state_dict(model, checkpoint.method)
        params = trainable_named(model)
        with torch.no_grad():
            for name, value in checkpoint.trainable.items():
                params[name].copy_(value)
    except (KeyError, ValueError, RuntimeError) as e:
        raise AuditError(f"checkpoint {checkpoint.path} could not be restored ({type(e).__name__}: {e}); "
                         "delete that folder to train this run from step 0.") from None
    torch.set_rng_state(checkpoint.rng["cpu"])
    if checkpoint.rng.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(checkpoint.rng["cuda"])


def remove(folder: Path) -> None:
    """Delete a run's checkpoints (once its final weights are saved, they are no longer needed)."""
    shutil.rmtree(folder, ignore_errors=True)


def save_trained(folder: Path, record: dict[str, Any]) -> None:
    """Mark the run's final weights in `folder` as complete, with what its training measured (written atomically).

    Written after the weights: a run killed before its results reached the store evaluates these weights again
    instead of training from zero (its checkpoints are gone by then)."""
    tmp = folder / f"{TMP}{TRAINED}"
    tmp.write_text(json.dumps(record))
    os.replace(tmp, folder / TRAINED)


def load_trained(folder: Path) -> dict[str, Any] | None:
    """What `save_trained` wrote, or None when the run's weights were never completely saved."""
    try:
        return json.loads((folder / TRAINED).read_text())
    except (OSError, ValueError):
        return None


def _read(path: Path) -> Checkpoint:
    missing = [f for f in FILES if not (path / f).is_file()]
    if missing:
        raise UnusableCheckpoint(f"missing {', '.join(missing)}")
    try:
        trainable = load_file(str(path / "trainable.safetensors"))
        optimizer = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True)
        state = torch.load(path / "state.pt", map_location="cpu", weights_only=True)
        return Checkpoint(state["step"], state["seconds"], state["tokens"], state["losses"], trainable, optimizer,
                          state["method"], state["rng"], path)
    except Exception as e:  # truncated or foreign files: safetensors, pickle and torch raise unrelated types
        raise UnusableCheckpoint(f"it does not read back ({type(e).__name__}: {e})") from None


def _check_fits(checkpoint: Checkpoint, step: int, model: nn.Module, steps: int) -> None:
    if checkpoint.step != step or len(checkpoint.losses) != step:
        raise UnusableCheckpoint(f"it holds step {checkpoint.step} and {len(checkpoint.losses)} losses, not {step}")
    if step > steps:
        raise UnusableCheckpoint(f"step {step} is past this run's {steps} steps")
    rng = checkpoint.rng.get("cpu") if isinstance(checkpoint.rng, dict) else None
    if not (isinstance(rng, torch.Tensor) and rng.dtype == torch.uint8):
        raise UnusableCheckpoint("its torch RNG state is missing or malformed")
    params = trainable_named(model)
    if set(params) != set(checkpoint.trainable):
        missing, extra = sorted(set(params) - set(checkpoint.trainable)), sorted(set(checkpoint.trainable) - set(params))
        raise UnusableCheckpoint(f"its parameters do not match the model's (missing {missing[:3]}, unexpected {extra[:3]})")
    for name, p in params.items():
        saved = checkpoint.trainable[name]
        if saved.shape != p.shape or saved.dtype != p.dtype:
            raise UnusableCheckpoint(f"{name} is {saved.dtype} {tuple(saved.shape)}, the model's is {p.dtype} {tuple(p.shape)}")


def _check_plain(value: Any, what: str, where: str = "") -> None:
    """Raise TypeError unless `value` is what torch.load(weights_only=True) reads back: tensors, numbers, strings,
    None, and lists, tuples and dicts of them."""
    if isinstance(value, dict):
        for k, v in value.items():
            _check_plain(v, what, f"{where}[{k!r}]")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_plain(v, what, f"{where}[{i}]")
    elif not isinstance(value, (torch.Tensor, int, float, str, bool, type(None))):
        raise TypeError(f"{what} holds a {type(value).__name__} at {where or 'the top'}; a checkpoint takes tensors, "
                        "numbers, strings, lists and dicts only. Make that state_dict return plain values.")
