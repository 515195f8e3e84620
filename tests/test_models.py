"""Model loading: local folders through the real HF loading code, safe defaults, clear errors."""

import pytest
import torch

from lowrank_audit.config import ModelSpec
from lowrank_audit.errors import AuditError
from lowrank_audit.models import load_model, resolve_precision


def test_local_folder_loads_through_the_hf_path(tiny, tmp_path):
    tiny.model.save_pretrained(tmp_path / "m")
    tiny.tokenizer.save_pretrained(tmp_path / "m")
    loaded = load_model(ModelSpec(source="hf", path=str(tmp_path / "m")))
    ids = torch.tensor([[3, 4, 5, 6]])
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(input_ids=ids).logits, tiny.model(input_ids=ids).logits)
    assert loaded.identity == str((tmp_path / "m").resolve())
    assert not any(p.requires_grad for p in loaded.model.parameters())


def test_pickle_weights_are_not_loaded(tiny, tmp_path):
    folder = tmp_path / "m"
    tiny.model.save_pretrained(folder)
    tiny.tokenizer.save_pretrained(folder)
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")  # only a pickle-format file left
    with pytest.raises(AuditError, match="could not load model"):
        load_model(ModelSpec(source="hf", path=str(folder)))


def test_missing_folder_and_folder_without_config(tmp_path):
    with pytest.raises(AuditError, match="does not exist"):
        load_model(ModelSpec(source="hf", path=str(tmp_path / "nothing")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(AuditError, match="has no config.json"):
        load_model(ModelSpec(source="hf", path=str(tmp_path / "empty")))


def test_tiny_model_is_deterministic_from_its_seed(smoke_spec):
    a = load_model(smoke_spec.model, ["a", "b"])
    b = load_model(smoke_spec.model, ["a", "b"])
    assert a.identity == b.identity
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(pa, pb)


def test_precision_resolution():
    assert resolve_precision("fp32") == "fp32"
    assert resolve_precision("bf16") == "bf16"
    assert resolve_precision("auto") in {"fp32", "bf16"}
