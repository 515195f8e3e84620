"""`audit` flags an adapter trained on another base by the models' identity, not their folder names: a local copy of
the base under another name passes, a model with other sizes or other weights is flagged."""

import copy
import json
import shutil

import torch
from peft import LoraConfig, get_peft_model

from lowrank_audit.audit import AuditSpec, run_audit
from lowrank_audit.audit_base import KnownModel
from lowrank_audit.audit_inputs import inspect_adapter
from lowrank_audit.config import ModelSpec
from lowrank_audit.models import load_model
from lowrank_audit.report import build_report

WRONG_BASE = "was trained on another base model"


def saved_base(tiny, folder, moved=0.0, dtype=torch.float32):
    """The tiny base (its weights moved by `moved`, to make another model of the same sizes) saved as a model folder."""
    model = copy.deepcopy(tiny.model).to(dtype)
    torch.manual_seed(3)
    for p in model.parameters():
        p.data.add_(moved * torch.randn_like(p))
    model.save_pretrained(folder)
    tiny.tokenizer.save_pretrained(folder)
    return folder


def adapter_on(base_folder, folder, seed=0):
    """A LoRA adapter trained (random B) on the model loaded from `base_folder`: PEFT records that folder in its config."""
    model = load_model(ModelSpec(source="hf", path=str(base_folder))).model
    torch.manual_seed(seed)
    peft = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    for key, p in peft.named_parameters():
        if "lora_B" in key:
            p.data.normal_(0, 0.5)
    peft.save_pretrained(folder)
    assert json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"] == str(base_folder)
    return folder


def names_base(adapter, name):
    """Make the adapter's config name another base model."""
    config = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": name}))


def warnings_of(adapter, base_folder):
    return inspect_adapter(adapter, adapter.name, KnownModel.of_base(ModelSpec(source="hf", path=str(base_folder)))).warnings


def test_a_renamed_copy_of_the_base_passes_and_another_base_is_flagged(smoke_spec, tiny, tmp_path, tool_lines):
    original = saved_base(tiny, tmp_path / "SmolLM2-135M")
    other = saved_base(tiny, tmp_path / "other-base", moved=0.05)  # same architecture and sizes, other weights
    same = adapter_on(original, tmp_path / "same")
    wrong = adapter_on(other, tmp_path / "wrong", seed=1)
    copy_folder = tmp_path / "my-local-copy"
    shutil.copytree(original, copy_folder)
    run_audit(AuditSpec(base=ModelSpec(source="hf", path=str(copy_folder)), adapters=[same, wrong], task="debias",
                        task_options=smoke_spec.tasks[0].options), tmp_path / "out", progress=False)
    warnings = [x for x in tool_lines() if x.startswith("warning:")]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"warning: adapter wrong {WRONG_BASE}: its config names {str(other)!r} (the same "
                                  "sizes, other weights (")
    report = build_report(tmp_path / "out").markdown.read_text()
    assert report.count(WRONG_BASE) == 1 and "adapter same" not in report


def test_identity_is_read_from_the_models_themselves(tiny, tmp_path):
    original = saved_base(tiny, tmp_path / "base")
    adapter = adapter_on(original, tmp_path / "adapter")
    half = saved_base(tiny, tmp_path / "half-precision-copy", dtype=torch.bfloat16)
    assert warnings_of(adapter, half) == ()  # a bf16 copy of the same weights is the same base

    config = json.loads((half / "config.json").read_text())
    (half / "config.json").write_text(json.dumps({**config, "hidden_size": 2 * config["hidden_size"]}))
    (warning,) = warnings_of(adapter, half)
    assert WRONG_BASE in warning and f"hidden_size {config['hidden_size']}, not {2 * config['hidden_size']}" in warning

    names_base(adapter, "SomeOrg/Tiny-Base")  # a hub id this machine does not have: only names can be compared
    renamed = shutil.copytree(original, tmp_path / "renamed")
    (warning,) = warnings_of(adapter, renamed)
    assert "its config names base model 'SomeOrg/Tiny-Base'" in warning and "cannot compare the two" in warning
    assert WRONG_BASE not in warning
    config = json.loads((renamed / "config.json").read_text())
    (renamed / "config.json").write_text(json.dumps({**config, "_name_or_path": "SomeOrg/Tiny-Base"}))
    assert warnings_of(adapter, renamed) == ()  # the copy's config records the hub id it came from
