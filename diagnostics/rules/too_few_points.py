"""INS001 too-few-points."""

from __future__ import annotations

from diagnostics.curves import MIN_EVAL_POINTS, MIN_TRAIN_POINTS
from diagnostics.findings import Fix
from diagnostics.rules._base import RuleContext, rule


@rule("INS001", "too-few-points", "insufficient", "info")
def too_few_points(ctx: RuleContext):
    """
    ## What it detects
    No loss at all (an empty `log_history`, a log of progress lines or of accuracies only), or
    fewer than 5 finite training losses and fewer than 3 eval losses.

    ## Why it matters
    A trend, a noise level or a minimum cannot be read from a handful of points; a confident verdict
    on them would be a guess. The answer is "insufficient evidence", with how to log more.

    ## Evidence
    The number of training and eval points and the steps they span.

    ## Fix
    Log more often (`logging_steps` so that a run logs 50 times or more) and evaluate during
    training (`eval_strategy="steps"`).

    ## References
    research/diagnostics.md ("abstain below ~10 post-warm-up training points, or below 3 eval
    points").
    """
    s = ctx.stats
    if s.n_train >= MIN_TRAIN_POINTS or s.n_eval >= MIN_EVAL_POINTS:
        return None
    total = s.total_steps
    fixes = []
    if total >= 50:
        fixes.append(
            Fix(
                "logging_steps",
                ctx.run.config.get("logging_steps"),
                max(1, int(total // 50)),
                "about 50 training-loss points per run",
            )
        )
    if s.n_train == 0 and s.n_eval == 0:
        others = sorted(set(ctx.run.metric_names) - {"loss", "eval_loss"})
        what = "no loss logged" + (f" (metrics found: {', '.join(others[:6])})" if others else "")
    else:
        what = f"{s.n_train} training and {s.n_eval} eval losses logged"
    return too_few_points.finding(
        f"insufficient evidence: {what}",
        confidence=0.9,
        evidence={"train_points": s.n_train, "eval_points": s.n_eval, "last_step": s.last_step},
        fixes=fixes,
    )
