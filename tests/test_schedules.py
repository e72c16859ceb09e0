"""Learning-rate schedules and optimisers built from their configs.

Each rule is checked against its closed form (slanted triangular against worked values of ULMFiT's
eq. 3), plateau against torch's ReduceLROnPlateau, and groups of different rates keep their ratios.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from rnnkit.config import validate
from rnnkit.errors import ConfigError
from rnnkit.train.options import OptimizerConfig, ScheduleConfig
from rnnkit.train.schedules import LRSchedule, make_optimizer

BASE = 0.5


def schedule(total_steps: int = 100, lr: float = BASE, **options) -> LRSchedule:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr)
    return LRSchedule(optimizer, ScheduleConfig(**options), total_steps)


def rates(s: LRSchedule, steps) -> list[float]:
    return [s.set(step) for step in steps]


# ---------------------------------------------------------------- warm-up, step, cosine


@pytest.mark.parametrize("name", ["constant", "step", "cosine"])
def test_warmup_is_linear_up_to_the_base_rate(name):
    s = schedule(name=name, warmup_steps=4, step_size=50)
    assert rates(s, range(5)) == pytest.approx([BASE / 4, BASE / 2, 3 * BASE / 4, BASE, BASE])


def test_the_rate_reaches_the_optimizer():
    s = schedule(warmup_steps=2)
    s.set(0)
    assert s.optimizer.param_groups[0]["lr"] == pytest.approx(BASE / 2)


def test_constant_stays_at_the_base_rate():
    assert rates(schedule(), [0, 1, 50, 1000]) == [BASE] * 4


def test_step_decay_multiplies_by_gamma_every_step_size_after_warmup():
    s = schedule(name="step", step_size=3, gamma=0.1, warmup_steps=2)
    got = rates(s, range(2, 12))
    want = [BASE] * 3 + [BASE * 0.1] * 3 + [BASE * 0.01] * 3 + [BASE * 0.001]
    assert got == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("warmup", [0, 5])
@pytest.mark.parametrize("min_lr", [0.0, 0.05])
def test_cosine_anneals_monotonically_to_min_lr_at_total_steps(warmup, min_lr):
    total = 40
    s = schedule(total_steps=total, name="cosine", min_lr=min_lr, warmup_steps=warmup)
    got = rates(s, range(warmup, total + 5))
    assert got[0] == pytest.approx(BASE)
    assert all(a >= b for a, b in itertools.pairwise(got))
    assert s.set(total) == pytest.approx(min_lr, abs=1e-15)
    assert s.set(total + 10) == pytest.approx(min_lr, abs=1e-15)  # stays there past the budget
    span = total - warmup
    for t in (span // 4, span // 2):  # Loshchilov & Hutter (2017), eq. 5
        want = min_lr + (BASE - min_lr) * 0.5 * (1 + math.cos(math.pi * t / span))
        assert s.set(warmup + t) == pytest.approx(want, rel=1e-12)


# ---------------------------------------------------------------- slanted triangular (ULMFiT)


@pytest.mark.parametrize(
    ("total", "cut_frac", "ratio", "steps_and_shares"),
    [  # Howard & Ruder (2018), eq. 3, worked by hand: cut = floor(T * cut_frac)
        (100, 0.1, 32, [(0, 1 / 32), (5, 16.5 / 32), (10, 1.0), (55, 16.5 / 32), (100, 1 / 32)]),
        (50, 0.2, 10, [(0, 0.1), (4, 0.46), (10, 1.0), (30, 0.55), (50, 0.1)]),
    ],
)
def test_slanted_triangular_follows_eq_3(total, cut_frac, ratio, steps_and_shares):
    s = schedule(total_steps=total, name="slanted_triangular", cut_frac=cut_frac, ratio=ratio)
    steps, shares = zip(*steps_and_shares, strict=True)
    assert rates(s, steps) == pytest.approx([BASE * share for share in shares], rel=1e-12)


def test_slanted_triangular_rises_then_falls_and_stays_at_its_floor_past_the_budget():
    s = schedule(total_steps=40, name="slanted_triangular")  # cut_frac 0.1, ratio 32: cut = 4
    got = rates(s, range(50))
    assert all(a < b for a, b in itertools.pairwise(got[:5]))
    assert all(a > b for a, b in itertools.pairwise(got[4:41]))
    assert got[40:] == pytest.approx([BASE / 32] * 10, rel=1e-12)


def test_slanted_triangular_on_a_run_shorter_than_one_over_cut_frac_peaks_at_step_1():
    s = schedule(total_steps=5, name="slanted_triangular", ratio=4)  # floor(0.5) = 0: cut is 1
    assert rates(s, [0, 1]) == pytest.approx([BASE / 4, BASE])


def test_slanted_triangular_refuses_a_warm_up_of_its_own():
    with pytest.raises(ConfigError, match=r"slanted_triangular warms up by itself.*warmup_steps to 0"):
        validate(ScheduleConfig, {"name": "slanted_triangular", "warmup_steps": 10})


# ---------------------------------------------------------------- groups of different rates


def grouped(name: str, **options) -> LRSchedule:
    """Three groups at BASE / 2.6 ** depth, as discriminative rates make them; the top group last."""
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": BASE / 2.6**d} for d in (2, 1, 0)]
    return LRSchedule(torch.optim.SGD(groups, BASE), ScheduleConfig(name=name, **options), 30)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("constant", {"warmup_steps": 3}),
        ("step", {"step_size": 4, "gamma": 0.5}),
        ("cosine", {"min_lr": 0.05}),
        ("plateau", {"patience": 0, "min_lr": 0.1}),
        ("slanted_triangular", {}),
    ],
)
def test_every_group_is_scaled_by_the_same_factor(name, options):
    s, alone = grouped(name, **options), schedule(total_steps=30, name=name, **options)
    for step in range(0, 40, 3):
        s.observe(1.0)  # plateau: no improvement after the first
        alone.observe(1.0)
        top = s.set(step)
        assert top == pytest.approx(alone.set(step), rel=1e-12)  # min_lr is the top group's floor
        got = [group["lr"] for group in s.optimizer.param_groups]
        assert got == pytest.approx([top / 2.6**2, top / 2.6, top], rel=1e-12)


# ---------------------------------------------------------------- plateau


def test_plateau_reduces_after_patience_evaluations_without_improvement():
    s = schedule(name="plateau", patience=2, factor=0.5)
    s.observe(1.0)  # the first evaluation is the best so far
    s.observe(1.0)  # not better: one
    s.observe(2.0)  # two: still within patience
    assert s.set(0) == BASE
    s.observe(1.5)  # three evaluations without improvement: reduce
    assert s.set(0) == BASE * 0.5
    s.observe(0.5)  # an improvement resets the count
    s.observe(0.6)
    s.observe(0.6)
    assert s.set(0) == BASE * 0.5


def test_plateau_matches_torch_reduce_on_plateau():
    values = [5, 4, 4, 4, 4, 3, 3.5, 3.2, 3.1, 3.0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2]
    s = schedule(name="plateau", patience=1, factor=0.5, min_lr=0.04)
    param = torch.nn.Parameter(torch.zeros(1))
    reference = torch.optim.SGD([param], BASE)
    torch_schedule = torch.optim.lr_scheduler.ReduceLROnPlateau(
        reference, factor=0.5, patience=1, threshold=0.0, min_lr=0.04, eps=0.0
    )
    got, want = [], []
    for value in values:
        s.observe(value)
        torch_schedule.step(value)
        got.append(s.set(7))
        want.append(reference.param_groups[0]["lr"])
    assert got == pytest.approx(want, rel=1e-12)
    assert min(got) == pytest.approx(0.04) and got[0] == BASE  # it did reduce, down to the floor


def test_plateau_never_goes_below_min_lr():
    s = schedule(name="plateau", patience=0, factor=0.3, min_lr=0.02)
    for _ in range(20):
        s.observe(1.0)
        assert s.set(0) >= 0.02 - 1e-15
    assert s.set(0) == pytest.approx(0.02)


@pytest.mark.parametrize("name", ["constant", "step", "cosine"])
def test_only_plateau_listens_to_evaluations(name):
    s = schedule(name=name)
    before = s.set(3)
    for _ in range(10):
        s.observe(1.0)
    assert s.set(3) == before


# ---------------------------------------------------------------- state


def test_state_dict_round_trip():
    s = schedule(total_steps=30, name="plateau", patience=1, factor=0.5, min_lr=0.01)
    for value in [3, 2, 2, 2, 2.5]:
        s.observe(value)
    state = s.state_dict()
    restored = schedule(total_steps=999, name="plateau", patience=1, factor=0.5, min_lr=0.01)
    restored.load_state_dict(state)
    assert restored.state_dict() == state
    for value in [2.5, 1.0, 1.2, 1.3, 1.4]:
        s.observe(value)
        restored.observe(value)
        assert restored.set(4) == s.set(4)
    assert s.set(4) < BASE


@pytest.mark.parametrize("name", ["cosine", "slanted_triangular"])
def test_state_dict_carries_the_budget(name):
    s = schedule(total_steps=20, name=name)
    restored = schedule(total_steps=999, name=name)  # a resumed run may count its steps otherwise
    restored.load_state_dict(s.state_dict())
    assert rates(restored, range(25)) == rates(s, range(25))


# ---------------------------------------------------------------- optimisers


@pytest.mark.parametrize(
    ("options", "cls", "hyper"),
    [
        (
            {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01},
            torch.optim.SGD,
            {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01},
        ),
        (
            {"name": "adam", "lr": 0.002, "betas": (0.8, 0.99), "weight_decay": 0.1},
            torch.optim.Adam,
            {"lr": 0.002, "betas": (0.8, 0.99), "weight_decay": 0.1},
        ),
        (
            {"name": "adamw", "lr": 0.003, "betas": (0.85, 0.95), "weight_decay": 0.2},
            torch.optim.AdamW,
            {"lr": 0.003, "betas": (0.85, 0.95), "weight_decay": 0.2},
        ),
        (
            {"name": "rmsprop", "lr": 0.004, "momentum": 0.5, "weight_decay": 0.3},
            torch.optim.RMSprop,
            {"lr": 0.004, "momentum": 0.5, "weight_decay": 0.3},
        ),
    ],
    ids=["sgd", "adam", "adamw", "rmsprop"],
)
def test_make_optimizer_picks_the_class_and_hyper_parameters(options, cls, hyper):
    params = [torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2, 2))]
    optimizer = make_optimizer(params, OptimizerConfig(**options))
    assert type(optimizer) is cls
    group = optimizer.param_groups[0]
    assert {k: group[k] for k in hyper} == hyper
    assert group["params"] == params


def test_make_optimizer_takes_groups_with_their_own_rates():
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.01 / 2.6}]
    groups.append({"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.01})
    optimizer = make_optimizer(groups, OptimizerConfig(name="adamw", lr=0.01, weight_decay=0.1))
    assert [g["lr"] for g in optimizer.param_groups] == [0.01 / 2.6, 0.01]
    assert all(g["weight_decay"] == 0.1 for g in optimizer.param_groups)


def test_default_optimizer_is_adam():
    optimizer = make_optimizer([torch.nn.Parameter(torch.zeros(1))], OptimizerConfig())
    assert type(optimizer) is torch.optim.Adam and optimizer.param_groups[0]["lr"] == 1e-3


@pytest.mark.parametrize(
    "options",
    [{"name": "sgd", "nesterov": True}, {"name": "adam", "nesterov": True, "momentum": 0.9}],
    ids=["sgd-without-momentum", "adam"],
)
def test_nesterov_needs_sgd_with_momentum(options):
    with pytest.raises(ConfigError, match=r"nesterov needs optimizer.name 'sgd' and momentum > 0"):
        validate(OptimizerConfig, options)


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"factor": 1.0}, "factor"),
        ({"step_size": 0}, "step_size"),
        ({"name": "linear"}, "name"),
        ({"cut_frac": 1.0}, "cut_frac"),
        ({"ratio": 0.5}, "ratio"),
    ],
)
def test_schedule_config_refuses_bad_values(options, key):
    with pytest.raises(ConfigError, match=key):
        validate(ScheduleConfig, options)


def test_discriminative_must_not_raise_the_lower_groups_rates():
    with pytest.raises(ConfigError, match="discriminative"):
        validate(OptimizerConfig, {"discriminative": 0.5})
