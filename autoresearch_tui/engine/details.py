"""What the diff view shows of a recorded experiment: its change, facts, curve against the best's,
log tail and the model's answers. Blocking file and git reads: call them in a thread."""

from __future__ import annotations

from ..fsio import fmt_metric
from .context import Ctx
from .ledger import GitError
from .metrics import error_tail, read_log_text
from .records import RunRecord
from .trackers import find_run_url
from .transcripts import answers_text, proposal_facts


def experiment_diff(ctx: Ctx, rec: RunRecord) -> str:
    """The change an experiment made, as a unified diff ("" for the baseline). Raises GitError."""
    if not rec.commit or rec.is_baseline:
        return ""
    return ctx.ledger.diff(rec.parent or rec.commit + "^", rec.commit)

def experiment_detail(ctx: Ctx, rec: RunRecord) -> str:
    """The diff of an experiment, its facts and its log tail, as text."""
    commit = rec.commit
    try:
        diff = experiment_diff(ctx, rec) or "(the baseline: no change)"
    except (GitError, OSError) as e:
        diff = f"(diff unavailable: {e})"
    log_text = read_log_text(ctx.root / rec.log) if rec.log else ""
    tail = error_tail(log_text, lines=25) if rec.log else ""
    tracker = find_run_url(log_text)
    if rec.exit_code is not None:
        exit_text = str(rec.exit_code)
    else:  # never exited by itself: killed, timed out, or never started
        exit_text = f"none (crashed: {rec.crash_reason})" if rec.status == "crash" and rec.crash_reason else "none"
    duration = f"{rec.duration_s:.1f} s" if rec.duration_s is not None else "—"
    facts = [f"commit {commit or '—'}", f"ref {rec.ref or '—'}", f"metric {fmt_metric(rec.metric)}", f"exit {exit_text}",
             f"duration {duration}"]
    if rec.crash_reason and rec.exit_code is not None:
        facts.append(f"crash: {rec.crash_reason}")
    if tracker:
        facts.append(f"tracker: {tracker}")
    facts += proposal_facts(rec)
    if rec.early_stop:
        facts.append(f"early stop: {rec.early_stop}")
    return "\n".join(facts) + "\n\n" + diff + "\n──── curve ────\n" + curve_text(ctx, rec) + "\n──── log tail ────\n" + tail

def curve_text(ctx: Ctx, rec: RunRecord, width: int = 70, height: int = 10) -> str:
    """The experiment's curve against the best run's and the baseline's (blocking file reads)."""
    from .. import textplot
    from . import curves

    if not rec.curve:
        return "(no curve: the log printed no 'step N (P%) | loss: X' lines; see progress_pattern)"
    h = ctx.history
    series: list[textplot.Series] = []
    base, best = h.baseline(), h.best()
    if base is not None and base.curve and base.iteration != rec.iteration:
        series.append((f"baseline #{base.iteration}", "○", curves.load(ctx.root / base.curve)))
    if best is not None and best.curve and best.iteration != rec.iteration:
        series.append((f"best #{best.iteration}", "·", curves.load(ctx.root / best.curve)))
    series.append((f"#{rec.iteration}", "●", curves.load(ctx.root / rec.curve)))
    return textplot.plot(series, width, height)


def experiment_answers(ctx: Ctx, rec: RunRecord) -> str:
    """The model's raw answers that led to an experiment (the rejected attempts first, each
    with why), read from its transcripts."""
    return answers_text(ctx.root, rec)
