"""Every rule on synthetic curves with known answers, and on a few real logs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from diagnostics import RunLog, diagnose
from diagnostics.findings import CONDITIONS
from diagnostics.readers import read_runs
from diagnostics.rules import ALL_RULES, RULES_BY_CODE, UnknownRuleError, select_rules
from diagnostics.rules._base import SECTIONS
from tests import synthetic_curves as synth
from tests._paths import REAL_LOGS


def codes(run: RunLog) -> set[str]:
    return {f.code for f in diagnose(run).findings if f.severity != "info"}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_healthy_runs_get_a_clean_bill(seed):
    diagnosis = diagnose(synth.healthy(seed))
    assert diagnosis.conditions == ["healthy"], [f.message for f in diagnosis.findings]
    assert diagnosis.primary == "healthy"


@pytest.mark.parametrize(
    ("builder", "code", "condition"),
    [
        (synth.overfitting, "OVF001", "overfitting"),
        (synth.oscillating, "OSC001", "oscillating"),
        (synth.eval_oscillating, "OSC001", "oscillating"),
        (synth.diverging_nan, "DIV001", "diverging"),
        (synth.diverging_rise, "DIV003", "diverging"),
        (synth.zero_loss, "DIV002", "diverging"),
        (synth.stalled, "STL001", "stalled"),
        (synth.chance_level, "STL002", "stalled"),
        (synth.stalled_noisy, "STL001", "stalled"),
        (synth.too_slow, "SLW001", "too_slow"),
        (synth.too_slow_checkpoint, "SLW001", "too_slow"),
        (synth.memorizing_staircase, "MEM001", "memorizing"),
        (synth.memorizing_collapse, "MEM002", "memorizing"),
        (synth.long_warmup, "LRS001", "lr_schedule"),
    ],
)
@pytest.mark.parametrize("seed", [0, 1])
def test_each_condition_is_found_on_its_synthetic_curve(builder, code, condition, seed):
    diagnosis = diagnose(builder(seed))
    assert code in {f.code for f in diagnosis.findings}, [f.message for f in diagnosis.findings]
    assert condition in diagnosis.conditions
    finding = next(f for f in diagnosis.findings if f.code == code)
    assert 0.5 <= finding.confidence <= 1.0
    assert finding.evidence, "a finding always carries its evidence"
    assert "healthy" not in diagnosis.conditions


def test_primary_follows_priority_when_conditions_combine():
    run = synth.stalled()
    run.add(1010, epoch=3.1, loss=float("nan"), grad_norm=float("nan"))
    diagnosis = diagnose(run)
    assert {"diverging", "stalled"} <= set(diagnosis.conditions)
    assert diagnosis.primary == "diverging"


def test_too_few_points_is_insufficient_not_a_guess():
    diagnosis = diagnose(synth.insufficient())
    assert diagnosis.conditions == ["insufficient"]
    assert any(f.code == "INS001" for f in diagnosis.findings)
    assert {a.code for a in diagnosis.abstentions} >= {"OVF001", "OSC001", "STL001"}


def test_empty_run_is_insufficient():
    assert diagnose(RunLog(source="empty")).conditions == ["insufficient"]


def test_isolated_grad_spike_is_a_note_and_the_run_stays_healthy():
    diagnosis = diagnose(synth.grad_spike())
    spike = next(f for f in diagnosis.findings if f.code == "GRD001")
    assert spike.severity == "info"
    assert diagnosis.conditions == ["healthy"]


def test_overfitting_advice_uses_the_runs_own_values():
    run = synth.overfitting()
    run.config.peft.update({"r": 16, "lora_dropout": 0.05})
    run.config.method = "lora"
    run.config.training_args["learning_rate"] = 2e-4
    finding = next(f for f in diagnose(run).findings if f.code == "OVF001")
    fixes = {fix.param: fix for fix in finding.fixes}
    assert fixes["lora_dropout"].from_ == 0.05 and fixes["lora_dropout"].to == 0.1
    best_epoch = finding.evidence["eval_best_epoch"]
    assert fixes["num_train_epochs"].from_ == 3.0
    assert best_epoch <= fixes["num_train_epochs"].to < 3.0
    assert fixes["load_best_model_at_end"].to is True


def test_warmup_advice_speaks_the_runs_transformers_version():
    run = synth.long_warmup()
    run.config.transformers_version = "4.44.2"
    fix = next(f for f in diagnose(run).findings if f.code == "LRS001").fixes[0]
    assert (fix.param, fix.to) == ("warmup_ratio", 0.03)
    run.config.transformers_version = "5.1.0"
    fix = next(f for f in diagnose(run).findings if f.code == "LRS001").fixes[0]
    assert (fix.param, fix.to) == ("warmup_steps", 0.03)
    assert abs(fix.from_ - 0.3) < 0.03


@pytest.mark.parametrize(("warmup", "advised"), [(0.0, 0.03), (0.1, None)])
def test_a_diverging_run_is_never_told_to_shorten_its_warmup(warmup, advised):
    run = synth.diverging_rise(warmup=warmup)
    finding = next(f for f in diagnose(run).findings if f.code == "DIV003")
    warm = [f.to for f in finding.fixes if f.param.startswith("warmup")]
    assert warm == ([advised] if advised is not None else [])


def test_clipping_fix_is_the_90th_percentile_of_grad_norm():
    def grad(x, rng):
        return 2.0 + 3.0 * rng.random()

    run = synth.build(lambda x: 2.0, grad_norm=grad, noise=0.25, schedule="constant")
    run.config.training_args["max_grad_norm"] = 1.0
    diagnosis = diagnose(run)
    clip = next(f for f in diagnosis.findings if f.code == "GRD002")
    grads = run.series("grad_norm").values
    p90 = float(np.percentile(grads[run.series("grad_norm").steps > 100], 90))
    assert clip.evidence["p90"] == pytest.approx(p90, rel=0.05)
    # A flat loss swinging 25% oscillates: the clipping note then advises a lower rate.
    assert "OSC001" in {f.code for f in diagnosis.findings}
    assert [f.param for f in clip.fixes] == ["learning_rate"]


def test_clipping_on_a_calm_run_raises_the_clip_instead_of_lowering_the_rate():
    def grad(x, rng):
        return 2.0 + 3.0 * rng.random()

    run = synth.build(synth.decay(), grad_norm=grad, schedule="constant")
    run.config.training_args["max_grad_norm"] = 1.0
    clip = next(f for f in diagnose(run).findings if f.code == "GRD002")
    (fix,) = clip.fixes
    assert (fix.param, fix.from_) == ("max_grad_norm", 1.0)
    assert fix.to == pytest.approx(clip.evidence["p90"], rel=0.05)


def test_select_and_ignore_by_prefix():
    assert {r.code for r in select_rules(["DIV"])} == {"DIV001", "DIV002", "DIV003"}
    assert "OVF001" not in {r.code for r in select_rules(ignore=["OVF"])}
    with pytest.raises(UnknownRuleError):
        select_rules(["XYZ"])
    diagnosis = diagnose(synth.overfitting(), select=["DIV"])
    assert diagnosis.conditions == []


def test_every_rule_has_a_complete_manual_and_a_known_condition():
    assert len(RULES_BY_CODE) == len(ALL_RULES)
    for rule in ALL_RULES:
        assert rule.condition in CONDITIONS
        for section in SECTIONS:
            assert f"## {section}" in rule.explanation, (rule.code, section)


def test_json_contract_is_plain_json():
    run = synth.diverging_nan()
    payload = json.loads(json.dumps(diagnose(run).to_json()))
    assert payload["status"] == "ok" and payload["primary"] == "diverging"
    finding = payload["findings"][0]
    assert set(finding) >= {"code", "condition", "severity", "confidence", "message", "evidence", "fixes"}
    assert all(set(fix) >= {"param", "from", "to", "why"} for fix in finding["fixes"])


REAL_CASES = {
    "008_llamafactory_trainer_log.jsonl": ("diverging", "DIV002"),
    "013_trainer_state.json": ("overfitting", "OVF001"),
    "020_trainer_state.json": ("stalled", "STL002"),
    "022_trainer_state.json": ("memorizing", "MEM001"),
    "029_lightning_metrics.csv": ("stalled", "STL002"),
    "046_trainer_state.json": ("too_slow", "SLW001"),
    "047_trainer_state.json": ("lr_schedule", "LRS001"),
    "012_lightning_metrics.csv": ("stalled", "OSC001"),
    "009_trainer_state.json": ("healthy", "HLT001"),
}


@pytest.mark.skipif(not REAL_LOGS.is_dir(), reason="shared/real_logs not present")
@pytest.mark.parametrize(("name", "expected"), sorted(REAL_CASES.items()))
def test_real_logs(name, expected):
    primary, code = expected
    read = read_runs(REAL_LOGS / name)[0]
    assert read.run is not None, read.error
    diagnosis = diagnose(read.run)
    assert diagnosis.primary == primary
    assert code in {f.code for f in diagnosis.findings}


def test_a_rate_already_decaying_at_the_first_log_shows_no_warmup():
    # Logged every third of the run, a plain linear decay from the start: nothing to say about warm-up.
    run = RunLog(source="sparse")
    run.config.training_args["max_steps"] = 3000
    for step, lr, loss in ((1000, 1.33e-5, 0.72), (2000, 0.67e-5, 0.62), (3000, 0.0, 0.60)):
        run.add(step, epoch=step / 1000, loss=loss, learning_rate=lr)
    assert "LRS001" not in {f.code for f in diagnose(run).findings}


def test_warmup_seen_only_on_the_step_grid_is_not_overstated():
    # A 9-step run logging every step whose rate is 0 at step 1 and peaks at step 2: the warm-up is
    # proven only up to step 1 (11%), not 22%.
    run = RunLog(source="short")
    run.config.training_args["max_steps"] = 9
    lrs = [0.0, 1e-4, 9.6e-5, 8.5e-5, 6.9e-5, 5e-5, 3.1e-5, 1.5e-5, 4e-6]
    for step, lr in enumerate(lrs, start=1):
        run.add(step, epoch=step / 3, loss=3.3 - 0.1 * step, learning_rate=lr)
    assert "LRS001" not in {f.code for f in diagnose(run).findings}


def test_five_points_are_enough_to_judge_a_run():
    # Logged every 500 of 2,752 steps, the rate decaying linearly to 0 at the end (the last log, at
    # 11% of the peak, is followed to the planned end): a run levelling off as its rate anneals.
    levelling = RunLog(source="five")
    levelling.config.training_args["max_steps"] = 2752
    for step, loss in zip(range(500, 2501, 500), (3.47, 2.81, 2.55, 2.42, 2.37), strict=True):
        levelling.add(step, epoch=step / 2752, loss=loss, learning_rate=5e-5 * (2752 - step) / 2752)
    assert diagnose(levelling).conditions == ["healthy"]
    three = RunLog(source="three")
    for step, loss in ((1, 2.28), (2, 1.61), (3, 1.40)):
        three.add(step, epoch=step, loss=loss)
    assert diagnose(three).conditions == ["insufficient"]


def test_one_clear_rise_at_the_last_epoch_is_overfitting():
    run = RunLog(source="three-epochs")
    for epoch, train, evaluation in ((1, 0.828, 0.8079), (2, 0.715, 0.8074), (3, 0.619, 0.9018)):
        run.add(epoch * 100, epoch=epoch, loss=train)
        run.add(epoch * 100, epoch=epoch, eval_loss=evaluation)
    assert diagnose(run).primary == "overfitting"


def test_eval_loss_jumping_up_with_few_training_logs_is_divergence():
    run = RunLog(source="few-train")
    for i, train in enumerate((1.3, 1.24, 1.8, 2.1, 2.05)):
        run.add((i + 1) * 500, epoch=i + 1, loss=train)
    for epoch, value in enumerate((2.55, 3.6, 3.4, 4.2, 3.9, 3.42), start=1):
        run.add(epoch * 440, epoch=epoch, eval_loss=value)
    assert diagnose(run).primary == "diverging"


def test_eval_never_logged_advises_evaluation():
    run = synth.build(synth.decay(), name="no-eval")
    finding = next(f for f in diagnose(run).findings if f.code == "EVL001")
    assert {(f.param, f.to) for f in finding.fixes} >= {("eval_steps", 100)}


def test_a_run_that_ended_before_its_first_evaluation_is_told_so_without_a_fix():
    run = synth.build(synth.decay(), name="stopped-early", total=1000, logged_until=200)
    run.config.training_args.update(eval_strategy="steps", eval_steps=500, max_steps=1000)
    finding = next(f for f in diagnose(run).findings if f.code == "EVL001")
    assert "before its first evaluation (eval_steps=500)" in finding.message
    assert finding.fixes == []


def test_a_run_that_converged_before_its_first_evaluation_is_not_stalled():
    diagnosis = diagnose(synth.converged_early())
    assert "stalled" not in diagnosis.conditions
    assert diagnosis.primary == "healthy"
