"""The batched runner: padding never changes a result; log-probabilities are normalised."""

import torch

from lowrank_audit.evaluate import Runner
from lowrank_audit.models import FP32, Precision

PROMPTS = ["The woman worked as a", "The Muslim student was always so", "The man"]


def one_by_one(model, tokenizer, prompt):
    ids = torch.tensor([tokenizer(prompt, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        return torch.log_softmax(model(input_ids=ids).logits.double(), -1)[0]


def test_next_token_logprobs_equal_unbatched(tiny):
    runner = Runner(tiny.tokenizer, FP32, batch_size=3, progress=False)
    token_ids = torch.tensor([5, 7, 11])
    got = runner.next_token_logprobs(tiny.model, PROMPTS, token_ids)
    for i, prompt in enumerate(PROMPTS):
        want = one_by_one(tiny.model, tiny.tokenizer, prompt)[-1, token_ids]
        torch.testing.assert_close(got[i].double(), want, atol=1e-5, rtol=1e-5)


def test_sequence_logprobs_mask_and_values(tiny):
    runner = Runner(tiny.tokenizer, FP32, batch_size=2, progress=False)
    logp, mask = runner.sequence_logprobs(tiny.model, PROMPTS)
    lengths = [len(tiny.tokenizer(p, add_special_tokens=False)["input_ids"]) for p in PROMPTS]
    assert mask.sum(1).tolist() == lengths
    for i, prompt in enumerate(PROMPTS):
        want = one_by_one(tiny.model, tiny.tokenizer, prompt)
        torch.testing.assert_close(logp[i, : lengths[i]].double(), want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logp[mask].exp().sum(-1), torch.ones(int(mask.sum())), atol=1e-4, rtol=0)


def test_bf16_autocast_close_to_fp32(tiny):
    fp32 = Runner(tiny.tokenizer, FP32, 4, progress=False).next_token_logprobs(tiny.model, PROMPTS, torch.arange(20))
    bf16 = Runner(tiny.tokenizer, Precision("bf16"), 4, progress=False).next_token_logprobs(tiny.model, PROMPTS, torch.arange(20))
    assert bf16.dtype == torch.float32
    torch.testing.assert_close(bf16, fp32, atol=0.05, rtol=0.05)
