"""The rule registry: every rule, in the order the engine runs them.

Adding a rule is one new module and one line here. Codes are stable; ``select`` / ``ignore`` take
codes or prefixes (``DIV`` selects every diverging rule), as ruff does.
"""

from __future__ import annotations

from collections.abc import Iterable

from diagnostics.rules._base import Rule, RuleContext, rule
from diagnostics.rules.chance_level import chance_level
from diagnostics.rules.clipping_most_steps import clipping_most_steps
from diagnostics.rules.epoch_staircase import epoch_staircase
from diagnostics.rules.eval_loss_rising import eval_loss_rising
from diagnostics.rules.eval_never_logged import eval_never_logged
from diagnostics.rules.grad_norm_spike import grad_norm_spike
from diagnostics.rules.healthy_run import healthy_run
from diagnostics.rules.long_warmup import long_warmup
from diagnostics.rules.loss_collapse import loss_collapse
from diagnostics.rules.loss_oscillating import loss_oscillating
from diagnostics.rules.loss_spikes import loss_spikes
from diagnostics.rules.no_progress import no_progress
from diagnostics.rules.non_finite_values import non_finite_values
from diagnostics.rules.peak_never_reached import peak_never_reached
from diagnostics.rules.rate_decayed_early import rate_decayed_early
from diagnostics.rules.rising_loss import rising_loss
from diagnostics.rules.still_falling import still_falling
from diagnostics.rules.too_few_points import too_few_points
from diagnostics.rules.zero_loss import zero_loss

# HLT001 reads the others' findings, so it runs last; GRD002's advice reads the diverging and
# oscillating findings, which come before it.
ALL_RULES: tuple[Rule, ...] = (
    too_few_points,
    non_finite_values,
    zero_loss,
    rising_loss,
    grad_norm_spike,
    no_progress,
    chance_level,
    eval_loss_rising,
    loss_oscillating,
    loss_spikes,
    clipping_most_steps,
    long_warmup,
    peak_never_reached,
    rate_decayed_early,
    epoch_staircase,
    loss_collapse,
    still_falling,
    eval_never_logged,
    healthy_run,
)

RULES_BY_CODE = {r.code: r for r in ALL_RULES}


class UnknownRuleError(ValueError):
    pass


def select_rules(select: Iterable[str] | None = None, ignore: Iterable[str] | None = None) -> list[Rule]:
    """The rules whose code starts with one of ``select`` (all if None) and with none of ``ignore``."""
    chosen = [c.strip().upper() for c in select or [] if c.strip()]
    dropped = [c.strip().upper() for c in ignore or [] if c.strip()]
    for prefix in chosen + dropped:
        if not any(code.startswith(prefix) for code in RULES_BY_CODE):
            raise UnknownRuleError(f"no rule code starts with {prefix!r} (see `diagnose --list-rules`)")
    return [
        r
        for r in ALL_RULES
        if (not chosen or any(r.code.startswith(p) for p in chosen))
        and not any(r.code.startswith(p) for p in dropped)
    ]


__all__ = ["ALL_RULES", "RULES_BY_CODE", "Rule", "RuleContext", "UnknownRuleError", "rule", "select_rules"]
