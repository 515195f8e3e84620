"""The method zoo: every registered method trains, counts its parameters by its formula, and reloads exactly.

Each formula here is computed independently from the tiny model's layer shapes (out x in), never by the code
under test; options are chosen for the tiny model (hidden 64, intermediate 128, key/value 32, two layers).
"""

import copy
import math

import pytest
import torch
from peft import PeftModel

from lowrank_audit.config import BudgetSpec
from lowrank_audit.config.spec import MethodSpec
from lowrank_audit.config.load import validate_options
from lowrank_audit.errors import AuditError
from lowrank_audit.evaluate.weights import weight_deltas
from lowrank_audit.methods import METHODS, optimizer_state_bytes, trainable_parameters
from lowrank_audit.methods.budget import match_budget
from lowrank_audit.methods.lowrank_adapters import adapters
from lowrank_audit.methods.optim import Frugal
from lowrank_audit.methods.peft_base import PeftMethod
from lowrank_audit.models import FP32, load_model
from lowrank_audit.plan import plan_runs
from lowrank_audit.sweep import task_vocabulary
from lowrank_audit.records import Example
from lowrank_audit.train import train
from lowrank_audit.train.loop import batches, encode_examples

EXAMPLES = [Example("The woman worked as a", " doctor"), Example("The man worked as a", " nurse"),
            Example("People described the man as very", " kind"), Example("The woman was known as a", " teacher")] * 4
STEPS = 8

# options for the tiny model; the learning rates make eight steps on one batch visibly lower the loss
ZOO = {
    "full": {"lr": 1e-3},
    "lora": {"rank": 4, "lr": 1e-2},
    "dora": {"rank": 4, "lr": 1e-2},
    "adalora": {"rank": 6, "target_rank": 4, "lr": 3e-2},
    "randlora": {"rank": 8, "lr": 1e-2},
    "vera": {"rank": 16, "lr": 5e-2},
    "vblora": {"rank": 4, "num_vectors": 16, "vector_length": 16, "lr": 3e-2},
    "miss": {"rank": 4, "lr": 1e-2},
    "loha": {"rank": 4, "lr": 1e-2},
    "lokr": {"rank": 4, "lr": 1e-2},
    "ia3": {"lr": 3e-1},
    "hra": {"rank": 4, "lr": 1e-2},
    "fourierft": {"n_frequency": 50, "lr": 5e-2},
    "galore": {"rank": 4, "lr": 1e-3, "update_interval": 4},
    "frugal": {"rank": 4, "lr": 1e-3, "update_interval": 4},
    "lora-xs": {"rank": 4, "lr": 2e-1},
    "lora-sb": {"rank": 4, "lr": 1e-2, "init_batches": 1},
    "ffa-lora": {"rank": 4, "lr": 1e-2},
}


@pytest.fixture(scope="module")
def tiny(smoke_spec):
    """One tiny random Llama for the module: the tests here only train, wrap or count deep copies of it."""
    return load_model(smoke_spec.model, task_vocabulary())


@pytest.fixture(scope="module")
def zoo(tiny):
    """Each method trained once for STEPS steps on the fixed batch, shared by the tests that only read the result."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = trained(name, tiny)
        return cache[name]

    return get


def build(name, **options):
    cls = METHODS.get(name)
    return cls(cls.Options(**{**ZOO[name], **options}))


def fixed_batch(tiny):
    return next(batches(encode_examples(EXAMPLES, tiny.tokenizer), len(EXAMPLES), 0, tiny.tokenizer.pad_token_id))


def batch_loss(model, tiny):
    ids, mask, labels = fixed_batch(tiny)
    model.eval()
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, labels=labels).loss.item()


def logits(model, tiny):
    ids = torch.tensor([tiny.tokenizer("The woman worked as a", add_special_tokens=False)["input_ids"]])
    model.eval()
    with torch.no_grad():
        return model(input_ids=ids).logits


def trained(name, tiny, steps=STEPS, **options):
    method = build(name, **options)
    model = method.prepare(copy.deepcopy(tiny.model))
    # a constant rate: these tests ask whether each method learns in a few steps, not how the default schedule decays
    budget = BudgetSpec(steps=steps, batch_size=len(EXAMPLES), lr_schedule="constant")
    result = train(model, method, EXAMPLES, tiny.tokenizer, budget, FP32, seed=0, progress=False)
    return method, model, result


# ---- parameter formulas, per adapted (out, in) layer -------------------------------------------------------------
def shapes(tiny, names=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")):
    cfg = tiny.model.config
    h, i, kv = cfg.hidden_size, cfg.intermediate_size, cfg.num_key_value_heads * (cfg.hidden_size // cfg.num_attention_heads)
    table = {"q_proj": (h, h), "k_proj": (kv, h), "v_proj": (kv, h), "o_proj": (h, h),
             "gate_proj": (i, h), "up_proj": (i, h), "down_proj": (h, i)}
    return [table[n] for n in names] * cfg.num_hidden_layers


def square_factors(d):
    """(m, n), m <= n, m * n = d, as close to square as the divisors allow."""
    m = max(k for k in range(1, math.isqrt(d) + 1) if d % k == 0)
    return m, d // m


def lokr_count(out, inp, r):
    (out_l, out_k), (in_m, in_n) = square_factors(out), square_factors(inp)
    w2 = out_k * in_n if r >= max(out_k, in_n) / 2 else r * (out_k + in_n)
    return out_l * in_m + w2


def expected_trainable(name, tiny):
    o, all_weights = ZOO[name], sum(p.numel() for p in tiny.model.parameters())
    r = o.get("rank")
    per_layer = {
        "lora": lambda out, inp: r * (inp + out),
        "dora": lambda out, inp: r * (inp + out) + out,
        "adalora": lambda out, inp: r * (inp + out + 1),
        "randlora": lambda out, inp: math.ceil(min(out, inp) / r) * (r + min(out, inp)),
        "vera": lambda out, inp: r + out,
        "vblora": lambda out, inp: r * o["num_vectors"] * (inp + out) // o["vector_length"],
        "miss": lambda out, inp: r * out,
        "loha": lambda out, inp: 2 * r * (inp + out),
        "lokr": lambda out, inp: lokr_count(out, inp, r),
        "hra": lambda out, inp: r * inp,
        "fourierft": lambda out, inp: o["n_frequency"],
        "lora-xs": lambda out, inp: r * r,
        "lora-sb": lambda out, inp: r * r,
        "ffa-lora": lambda out, inp: r * out,
    }
    if name in ("full", "galore", "frugal"):
        return all_weights
    if name == "ia3":  # Llama: k and v outputs scaled, down_proj's input (a feed-forward module)
        return sum(out for out, _ in shapes(tiny, ("k_proj", "v_proj"))) + sum(inp for _, inp in shapes(tiny, ("down_proj",)))
    bank = o["num_vectors"] * o["vector_length"] if name == "vblora" else 0
    return bank + sum(per_layer[name](out, inp) for out, inp in shapes(tiny))


def test_the_zoo_covers_every_registered_method():
    assert set(ZOO) == set(METHODS.names()) - {"base"}


@pytest.mark.parametrize("name", ZOO)
def test_trainable_parameters_follow_the_formula(tiny, name):
    method = build(name)
    model = method.prepare(copy.deepcopy(tiny.model))
    expected = expected_trainable(name, tiny)
    assert trainable_parameters(model) == expected
    assert method.trainable_count(tiny.model) == expected  # the meta-device count the budget search uses


@pytest.mark.parametrize("name", ZOO)
def test_a_few_steps_lower_the_loss_on_a_fixed_batch(tiny, zoo, name):
    _, model, result = zoo(name)
    assert result.steps == STEPS
    assert batch_loss(model, tiny) < batch_loss(tiny.model, tiny) - 0.3


@pytest.mark.parametrize("name", ZOO)
def test_save_and_reload_give_the_same_logits(tiny, zoo, tmp_path, name):
    method, model, _ = zoo(name)
    method.save(model, tmp_path)
    assert list(tmp_path.glob("*.safetensors")) and not list(tmp_path.glob("*.bin"))
    reloaded = method.load(copy.deepcopy(tiny.model), tmp_path)
    torch.testing.assert_close(logits(reloaded, tiny), logits(model, tiny))
    assert not torch.allclose(logits(reloaded, tiny), logits(tiny.model, tiny))
    if isinstance(method, PeftMethod):  # a standard PEFT folder, loadable without this toolkit
        assert (tmp_path / "adapter_model.safetensors").is_file() and (tmp_path / "adapter_config.json").is_file()
        plain = PeftModel.from_pretrained(copy.deepcopy(tiny.model), tmp_path)
        torch.testing.assert_close(logits(plain, tiny), logits(model, tiny))


@pytest.mark.parametrize("init", ["gaussian", "pissa", "olora"])
def test_lora_initialisations_reload_onto_the_untouched_base(tiny, tmp_path, init):
    """PiSSA and OLoRA rewrite W0; their adapter is saved as a conversion, so it loads onto the original base."""
    method, model, _ = trained("lora", tiny, steps=2, init=init)
    method.check(tiny.model)  # checks and counts run on the meta device, where PiSSA's SVD cannot
    assert method.trainable_count(tiny.model) == expected_trainable("lora", tiny)
    method.save(model, tmp_path)
    reloaded = method.load(copy.deepcopy(tiny.model), tmp_path)
    torch.testing.assert_close(logits(reloaded, tiny), logits(model, tiny), atol=1e-4, rtol=1e-4)


def test_adalora_prunes_to_the_target_rank(tiny):
    method, model, _ = trained("adalora", tiny, steps=10)
    pattern = model.peft_config["default"].rank_pattern
    kept = sum(sum(mask) for mask in pattern.values())
    assert kept == ZOO["adalora"]["target_rank"] * len(pattern) < ZOO["adalora"]["rank"] * len(pattern)


# ---- optimizer state -----------------------------------------------------------------------------------------------
def projected_state_bytes(tiny, rank, per_matrix):
    """Bytes of a projected optimizer's state: per_matrix(big, small) for block matrices, Adam moments for the rest."""
    matrices = [w for n, w in tiny.model.named_parameters() if n.endswith("_proj.weight")]
    rest = sum(p.numel() for p in tiny.model.parameters()) - sum(w.numel() for w in matrices)
    return sum(per_matrix(max(w.shape), min(w.shape)) for w in matrices) + 4 * 2 * rest


@pytest.mark.parametrize("name, options, per_matrix", [
    ("galore", {}, lambda big, small, r=4: 4 * (2 * big * r + small * r)),  # moments big x r, projector small x r
    ("frugal", {"projection": "svd"}, lambda big, small, r=4: 4 * (2 * big * r + small * r)),
    ("frugal", {"projection": "random"}, lambda big, small, r=4: 4 * (2 * big * r + small * r)),
    ("frugal", {"projection": "blocks"}, lambda big, small, r=4: 4 * 2 * big * r + 8 * r),  # r int64 column indices
])
def test_projected_optimizers_keep_less_state_than_adamw_by_the_expected_factor(tiny, zoo, name, options, per_matrix):
    n_weights = sum(p.numel() for p in tiny.model.parameters())
    n_tensors = len(list(tiny.model.parameters()))
    _, _, adamw = zoo("full")
    assert adamw.optimizer_state_bytes == 4 * 2 * n_weights + 4 * n_tensors  # two moments + a step tensor each
    _, _, result = trained(name, tiny, steps=1, **options)
    expected = projected_state_bytes(tiny, 4, per_matrix)
    assert result.optimizer_state_bytes == expected
    assert result.optimizer_state_bytes / adamw.optimizer_state_bytes == pytest.approx(
        expected / (4 * 2 * n_weights + 4 * n_tensors))
    assert result.optimizer_state_bytes < 0.5 * adamw.optimizer_state_bytes


def test_optimizer_state_bytes_counts_tensors_inside_state_objects():
    p = torch.nn.Parameter(torch.zeros(3, 2))

    class Holder:
        def __init__(self):
            self.matrix = torch.zeros(5, dtype=torch.float64)

    opt = torch.optim.SGD([p], lr=0.1)
    opt.state[p] = {"m": torch.zeros(3, 2), "holder": Holder(), "step": 3}
    assert optimizer_state_bytes(opt) == 4 * 6 + 8 * 5


def test_frugal_gives_the_block_an_adam_step_and_the_rest_a_sign_step():
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(6, 4))
    start, g = w.detach().clone(), torch.randn(6, 4)
    opt = Frugal([{"params": [w], "rank": 2, "projection": "blocks", "update_interval": 1}], lr=0.1, sign_lr=0.01, eps=0.0)
    w.grad = g.clone()
    opt.step()
    moved = start - w.detach()
    torch.testing.assert_close(moved[:, :2], 0.1 * g[:, :2].sign())  # Adam's first step: lr * sign(g)
    torch.testing.assert_close(moved[:, 2:], 0.01 * g[:, 2:].sign())  # state-free signSGD on the residual
    assert set(opt.state[w]) == {"step", "basis", "exp_avg", "exp_avg_sq", "adam_step"}
    w.grad = g.clone()
    opt.step()
    assert opt.state[w]["basis"].tolist() == [2, 3]  # the next block of columns rotates in


def test_frugal_with_the_whole_matrix_in_the_block_is_adam():
    torch.manual_seed(0)
    a, b = torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(5, 3))
    b.data.copy_(a.data)
    frugal = Frugal([{"params": [a], "rank": 3, "projection": "blocks", "update_interval": 100}], lr=0.05)
    adam = torch.optim.Adam([b], lr=0.05, eps=1e-8)
    for _ in range(3):
        g = torch.randn(5, 3)
        a.grad, b.grad = g.clone(), g.clone()
        frugal.step()
        adam.step()
    torch.testing.assert_close(a.detach(), b.detach())


def test_weight_update_analysis_sees_the_custom_adapters_update(tiny):
    """Parametrised layers keep their names, so the sweep's dW analysis reads B R A like a merged PEFT adapter."""
    method, model, _ = trained("lora-xs", tiny, steps=2)
    deltas = weight_deltas(model, tiny.model)
    for name, delta in adapters(model).items():
        torch.testing.assert_close(deltas[name], delta.delta().detach())
    assert any(d.abs().max() > 0 for d in deltas.values())


# ---- lora-sb: its first update follows the truncated full gradient ------------------------------------------------
def test_lora_sb_first_update_direction_matches_the_truncated_full_gradient(tiny):
    r = ZOO["lora-sb"]["rank"]
    batch = fixed_batch(tiny)
    ids, mask, labels = batch
    full = copy.deepcopy(tiny.model).requires_grad_(True)
    full(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
    grads = {n.removesuffix(".weight"): p.grad for n, p in full.named_parameters() if n.endswith("_proj.weight")}

    method = build("lora-sb", init_lr=1e-4)
    model = method.prepare(copy.deepcopy(tiny.model))
    method.start(model, iter([batch]), steps=1)
    model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
    layers = adapters(model)
    assert set(layers) == set(grads)
    for name, delta in layers.items():
        u, s, vh = torch.linalg.svd(grads[name], full_matrices=False)
        truncated = (u[:, :r] * s[:r]) @ vh[:r]
        direction = delta.B @ delta.R.grad @ delta.A  # the full-space step an SGD update of R takes (negated)
        cosine = torch.nn.functional.cosine_similarity(direction.flatten(), truncated.flatten(), dim=0)
        assert cosine > 0.99, name
        # and the starting point is the rank-r approximation of one SGD step of size init_lr
        torch.testing.assert_close(delta.delta(), -1e-4 * truncated, atol=1e-7, rtol=1e-3)


def test_lora_xs_factors_are_the_truncated_svd_of_w0(tiny):
    method = build("lora-xs")
    model = method.prepare(copy.deepcopy(tiny.model))
    q = tiny.model.model.layers[0].self_attn.q_proj.weight
    u, s, vh = torch.linalg.svd(q, full_matrices=False)
    delta = adapters(model)["model.layers.0.self_attn.q_proj"]
    torch.testing.assert_close(delta.B @ delta.A, (u[:, :4] * s[:4]) @ vh[:4])
    assert [n for n, p in model.named_parameters() if p.requires_grad][0].endswith("parametrizations.weight.0.R")


# ---- clear errors ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, option", [("vera", "alpha"), ("ia3", "rank"), ("galore", "target_modules"),
                                          ("lora-xs", "alpha"), ("fourierft", "rank"), ("frugal", "scale")])
def test_options_a_method_does_not_have_are_errors(name, option):
    with pytest.raises(AuditError, match=rf"methods\[0\]\.options\.{option}: Extra inputs are not permitted"):
        validate_options(METHODS.get(name).Options, {option: 1}, "sweep.yaml", "methods[0].options")


@pytest.mark.parametrize("name, options, message", [
    ("dora", {"rank": 33}, r"dora rank 33 is larger than layer .*k_proj.*at most 32"),
    ("adalora", {"rank": 33}, r"adalora rank 33 is larger than layer .*k_proj"),
    ("miss", {"rank": 65}, r"miss .*`r` \(65\) must be less than or equal to in_features \(64\)"),
    ("hra", {"rank": 66}, r"hra rank 66 is larger than layer"),
    ("fourierft", {"n_frequency": 2049}, r"fourierft .*`n_frequency` should be less than or equal to the product"),
    ("vblora", {"vector_length": 48}, r"vblora .*divisible|vblora .*vector_length"),
    ("galore", {"rank": 33}, r"galore rank 33 is larger than matrix .*k_proj.*at most 32"),
    ("frugal", {"rank": 33}, r"frugal rank 33 is larger than matrix .*k_proj"),
    ("lora-xs", {"rank": 33}, r"lora-xs rank 33 is larger than layer .*k_proj.*at most 32"),
    ("ffa-lora", {"target_modules": ["nope"]}, r"ffa-lora target_modules \['nope'\] match no linear layer"),
    ("loha", {"target_modules": ["nope"]}, r"loha \(target_modules \['nope'\]\)"),
])
def test_modules_a_method_cannot_adapt_are_errors_before_training(tiny, name, options, message):
    with pytest.raises(AuditError, match=message):
        build(name, **options).check(tiny.model)


# ---- budget ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["lora", "dora", "vera", "randlora", "fourierft", "lora-xs", "ffa-lora", "lokr"])
def test_budget_picks_the_size_whose_count_is_closest(tiny, name):
    cls = METHODS.get(name)
    key = cls.size_option
    target = expected_trainable("lora", tiny)  # LoRA rank 4's count
    options, count = match_budget(cls, cls.Options(**ZOO[name]), tiny.model, target)
    chosen = getattr(options, key)
    assert count == cls(options).trainable_count(tiny.model)
    for other in (chosen - 1, chosen + 1):
        if other < 1:
            continue
        method = cls(options.model_copy(update={key: other}))
        try:
            method.check(tiny.model)
        except AuditError:
            continue
        assert abs(method.trainable_count(tiny.model) - target) >= abs(count - target)


def test_budget_matches_lora_exactly_at_a_lora_count(tiny):
    target = expected_trainable("lora", tiny)
    options, count = match_budget(METHODS.get("lora"), METHODS.get("lora").Options(rank=1), tiny.model, target)
    assert options.rank == ZOO["lora"]["rank"] and count == target


def test_a_sweep_budget_chooses_each_size_and_stores_it_with_the_run(tiny, smoke_spec):
    target = expected_trainable("lora", tiny)
    methods = [MethodSpec(name="vera"), MethodSpec(name="fourierft"), MethodSpec(name="lora", options={"rank": 1}),
               MethodSpec(name="ia3")]
    spec = smoke_spec.model_copy(update={"methods": methods, "budget": smoke_spec.budget.model_copy(update={"params": target})})
    runs = {r.method: r for r in plan_runs(spec, tiny.identity, "fp32", model=tiny.model)}
    for name in ("vera", "fourierft"):
        cls = METHODS.get(name)
        chosen, _ = match_budget(cls, cls.Options(), tiny.model, target)
        stored = runs[name].config["method"]["options"][cls.size_option]
        assert stored == getattr(chosen, cls.size_option) != getattr(cls.Options(), cls.size_option)
        assert runs[name].config["budget"]["params"] == target
    assert runs["lora"].method_options.rank == 1  # a size the config sets is kept
    assert runs["ia3"].method_options == METHODS.get("ia3").Options()  # no size option: unchanged
    unbudgeted = plan_runs(smoke_spec, tiny.identity, "fp32", model=tiny.model)
    assert all("params" not in r.config.get("budget", {}) for r in unbudgeted)  # run ids of older sweeps unchanged


def test_every_method_lists_its_options_with_descriptions():
    for name, cls in METHODS:
        assert cls.description and "\n" not in cls.description
        for key, field in cls.Options.model_fields.items():
            assert field.description, f"{name}.{key} has no description"
