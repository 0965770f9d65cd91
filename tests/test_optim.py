"""fastnet.optim: the learning-rate schedules at their first, middle and last steps against their formula,
the optimisers' hyper-parameter checks, their updates against the formula, and their state round trip."""

import math

import numpy as np
import pytest

import kernels.reference as ref
from fastnet.optim import GD, OPTIMIZERS, Adam, learning_rate
from kernels import OPTIMIZER_HYPER, OPTIMIZER_STATE

BASE = 0.1


# --- schedules ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("step", [0, 1, 499, 999, 5000])
def test_constant_schedule_is_the_base_rate_at_every_step(step):
    assert learning_rate(BASE, "constant", step, 1000) == BASE


def test_warmup_rises_linearly_to_the_base_rate_then_the_schedule_takes_over():
    """Step k < warmup runs at base·(k + 1)/warmup: the first step at base/warmup, the warm-up's last at base."""
    for schedule in ("constant", "cosine"):
        rates = [learning_rate(BASE, schedule, k, 100, warmup=4) for k in range(4)]
        assert rates == [BASE * (k + 1) / 4 for k in range(4)]
        assert rates[-1] == BASE
    assert learning_rate(BASE, "constant", 4, 100, warmup=4) == BASE
    assert learning_rate(BASE, "cosine", 4, 100, warmup=4) == BASE  # t = 0: cos(0) = 1


@pytest.mark.parametrize("warmup", [0, 10])
def test_cosine_schedule_at_its_first_middle_and_last_step(warmup):
    """base·(1 + cos(pi·t))/2 with t = (step - warmup)/(total - warmup): base at t = 0, base/2 half-way,
    and near zero (not zero) at the run's last step."""
    total = 110

    def formula(step):
        return BASE * 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))

    first, middle, last = warmup, warmup + (total - warmup) // 2, total - 1
    assert learning_rate(BASE, "cosine", first, total, warmup) == BASE
    assert learning_rate(BASE, "cosine", middle, total, warmup) == pytest.approx(BASE / 2, rel=1e-12)
    for step in (first, middle, last, warmup + 7):
        assert learning_rate(BASE, "cosine", step, total, warmup) == formula(step)
    assert 0 < learning_rate(BASE, "cosine", last, total, warmup) < BASE * 1e-3


def test_cosine_schedule_decreases_and_stays_at_zero_past_its_horizon():
    rates = [learning_rate(BASE, "cosine", k, 50) for k in range(50)]
    assert all(a > b for a, b in zip(rates, rates[1:]))
    assert learning_rate(BASE, "cosine", 50, 50) == 0.0 == learning_rate(BASE, "cosine", 80, 50)


def test_cosine_schedule_whose_warmup_fills_the_run_divides_by_at_least_one():
    """total == warmup: no step is left for the cosine; t's denominator is 1, never 0."""
    assert learning_rate(BASE, "cosine", 5, 5, warmup=5) == BASE
    assert learning_rate(BASE, "cosine", 6, 5, warmup=5) == 0.0


# --- hyper-parameters -----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", sorted(OPTIMIZERS))
@pytest.mark.parametrize("alpha", [-1e-9, -1.0, math.inf, math.nan])
def test_alpha_must_be_finite_and_not_negative(kind, alpha):
    with pytest.raises(ValueError, match="alpha"):
        OPTIMIZERS[kind](8, np.float32, alpha=alpha)


@pytest.mark.parametrize("kind", sorted(OPTIMIZERS))
def test_alpha_is_kept_as_a_float(kind):
    opt = OPTIMIZERS[kind](8, np.float32, alpha=np.float32(0.5))
    assert type(opt.alpha) is float and opt.alpha == 0.5
    assert OPTIMIZERS[kind](8, np.float32).alpha == 0.0


@pytest.mark.parametrize("beta1, beta2, eps", [
    (1.0, 0.999, 1e-8), (-0.1, 0.999, 1e-8), (0.9, 1.0, 1e-8), (0.9, -1e-3, 1e-8),
    (0.9, 0.999, 0.0), (0.9, 0.999, -1e-8), (0.9, 0.999, math.inf), (math.nan, 0.999, 1e-8),
])
def test_adam_refuses_betas_outside_0_1_and_eps_not_positive(beta1, beta2, eps):
    with pytest.raises(ValueError, match="beta1, beta2 < 1 and eps > 0"):
        Adam(8, np.float32, beta1=beta1, beta2=beta2, eps=eps)


def test_adam_takes_betas_at_their_bounds():
    opt = Adam(8, np.float64, beta1=0.0, beta2=0.0, eps=1e-300)
    assert opt.hyper() == (0.0, 0.0, 1e-300)


@pytest.mark.parametrize("kind", sorted(OPTIMIZERS))
def test_hyper_and_state_follow_the_kernels_tables(kind):
    """hyper() gives kernels.OPTIMIZER_HYPER's names in their order, state() kernels.OPTIMIZER_STATE's
    buffers (zeros of the parameters' size and dtype) and the step."""
    opt = OPTIMIZERS[kind](6, np.float32, alpha=0.25)
    assert opt.name == kind and opt.hyper() == tuple(getattr(opt, k) for k in OPTIMIZER_HYPER[kind])
    state = opt.state()
    assert list(state) == ["step", *OPTIMIZER_STATE[kind]] and int(state["step"]) == 0
    for name in OPTIMIZER_STATE[kind]:
        assert state[name].dtype == np.float32 and state[name].shape == (6,) and not state[name].any()


# --- updates and state ------------------------------------------------------------------------------------

def test_gd_update_is_p_minus_lr_times_g():
    p = np.array([1.0, -2.0, 0.5])
    g = np.array([0.5, 0.25, -1.0])
    opt = GD(3, np.float64)
    assert opt.update(ref, p, g, 0.1) is True
    np.testing.assert_array_equal(p, np.array([1.0, -2.0, 0.5]) - 0.1 * g)
    assert opt.step == 1
    assert opt.update(ref, p, np.array([np.inf, 0, 0]), 0.1) is False  # a parameter no longer finite


def test_adam_first_step_moves_each_parameter_by_about_lr_against_its_gradient():
    """At step 1 the bias-corrected moments are g and g², so p moves by lr·g/(|g| + eps)."""
    g = np.array([0.5, -0.25, 2.0, 1e-3])
    p = np.zeros(4)
    opt = Adam(4, np.float64, eps=1e-8)
    assert opt.update(ref, p, g, 0.01)
    np.testing.assert_allclose(p, -0.01 * g / (np.abs(g) + 1e-8), rtol=1e-12)
    np.testing.assert_allclose(opt.m, 0.1 * g, rtol=1e-15)
    np.testing.assert_allclose(opt.v, 0.001 * g * g, rtol=1e-12)
    assert opt.step == 1


def test_adam_second_step_uses_the_decayed_moments():
    g1, g2 = np.array([0.5, -1.0]), np.array([-0.5, 3.0])
    p = np.zeros(2)
    opt = Adam(2, np.float64, beta1=0.8, beta2=0.99, eps=1e-8)
    opt.update(ref, p, g1, 0.01)
    after_one = p.copy()
    opt.update(ref, p, g2, 0.02)
    m = 0.8 * 0.2 * g1 + 0.2 * g2
    v = 0.99 * 0.01 * g1**2 + 0.01 * g2**2
    step = 0.02 * (m / (1 - 0.8**2)) / (np.sqrt(v / (1 - 0.99**2)) + 1e-8)
    np.testing.assert_allclose(p, after_one - step, rtol=1e-12)


@pytest.mark.parametrize("kind", sorted(OPTIMIZERS))
def test_load_state_restores_the_step_and_buffers(kind):
    rng = np.random.default_rng(0)
    opt = OPTIMIZERS[kind](5, np.float32)
    for buffer in opt.buffers:
        buffer[...] = rng.random(5)
    opt.step = 7
    other = OPTIMIZERS[kind](5, np.float32)
    other.load_state(opt.state())
    assert other.step == 7
    for a, b in zip(opt.buffers, other.buffers):
        assert a.tobytes() == b.tobytes() and a is not b


def test_a_recipes_schedule_is_its_rate_at_each_step():
    from fastnet.optim import schedule_of
    from fastnet.recipe import Recipe

    r = Recipe(lr=3e-3, schedule="cosine", warmup=4)
    rate = schedule_of(r)
    assert [rate(step, 20) for step in range(22)] == [learning_rate(3e-3, "cosine", s, 20, 4) for s in range(22)]
    assert rate(0, 20) == 3e-3 / 4 and rate(19, 20) < 3e-3 * 0.01
