"""Preflight measures the run's largest micro-batch and refuses what cannot fit."""

from __future__ import annotations

import pytest

from lmforge import LmforgeError
from lmforge.tune.data import Example, collate
from lmforge.tune.loss import CausalLMLoss
from lmforge.tune.methods import wrap
from lmforge.tune.preflight import plan_run


@pytest.fixture
def setup(tiny_tokenizer, model_factory):
    model = wrap(model_factory(len(tiny_tokenizer)), "lora", {})
    model.train()
    groups = [[Example(list(range(3, 3 + n)), [-100] + list(range(4, 3 + n)))] for n in (8, 30, 12)]
    return model, CausalLMLoss(model), groups


def test_plan_keeps_settings_that_fit_and_predicts_time(setup):
    model, loss_fn, groups = setup
    plan = plan_run(model, loss_fn, groups, lambda g: collate(g, 0), 2, 3, 10, None, 1e6)
    assert (plan.micro_batch, plan.grad_accum, plan.gradient_checkpointing) == (2, 3, False)
    assert plan.step_s > 0 and plan.total_s == pytest.approx(plan.step_s * 10)
    assert plan.peak_mb > 0 and plan.trainable < plan.params
    assert all(p.grad is None for p in model.parameters())  # measuring left no gradients


def test_plan_refuses_a_run_that_cannot_fit(setup):
    model, loss_fn, groups = setup
    with pytest.raises(LmforgeError, match="MB available"):
        plan_run(model, loss_fn, groups, lambda g: collate(g, 0), 2, 1, 10, None, 1.0)
