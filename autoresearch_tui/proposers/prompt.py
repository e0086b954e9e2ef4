"""The LLM prompt: strategy, goal, scope, files, history, ideas, and the answer format."""

from __future__ import annotations

from ..fsio import fmt_metric
from .base import ProposalContext

READ_ONLY_LIMIT = 6000
HISTORY_RECENT = 15
CRASHES_SHOWN = 3

FORMAT = """Answer in exactly this format and nothing else:

DESCRIPTION: <one line: what this experiment changes, e.g. "raise LR from 3e-4 to 6e-4">
HYPOTHESIS: <one line: why it should improve the metric>

<path of the file to edit, e.g. train.py>
<<<<<<< SEARCH
<lines copied exactly from the current file>
=======
<the new lines>
>>>>>>> REPLACE

Use one SEARCH/REPLACE block per place you change (several blocks are allowed). Each SEARCH
must match the current file exactly once: copy enough lines to be unique. Make one focused
change (one idea), not several unrelated ones. (Also accepted: a unified diff, the whole edited
file in one fenced block, or `NAME = value` lines for module-level constants.)"""


def build_messages(ctx: ProposalContext, scope: list[str], read_only: list[str]) -> list[dict[str, str]]:
    better = "lower" if ctx.direction == "minimize" else "higher"
    system = (
        "You are an ML researcher running an automated experiment loop. Each experiment is one "
        f"change to the code, trained for a fixed time budget, judged by one metric ({ctx.metric}, {better} is better). "
        f"You may edit ONLY these files: {', '.join(scope)}. The evaluator ({', '.join(read_only) or 'none'}) is fixed and off "
        "limits: any edit to it, to other files, or outside the repository is rejected before anything runs. "
        "Do not add dependencies.\n\n" + FORMAT
    )
    parts: list[str] = []
    if ctx.program.strip():
        parts.append("## Research strategy (program.md)\n" + ctx.program.strip()[:8000])
    parts.append(f"## Goal\n{ctx.goal or ctx.metric}\nMetric: {ctx.metric} ({ctx.direction}).")
    if ctx.platform:
        parts.append("## Platform\n" + str(ctx.platform.get("summary", "")) + "".join(f"\n- {a}" for a in ctx.advice))
    base, best = ctx.baseline, ctx.best
    if best:
        parts.append(f"## Best so far\n#{best.iteration} {fmt_metric(best.metric)} ({best.description}); "
                     f"baseline {fmt_metric(base and base.metric)}.")
    runs = [r for r in ctx.history if not r.is_baseline]
    if runs:
        lines = [f"#{r.iteration} {r.status:<7} {fmt_metric(r.metric)}  {r.description}" for r in runs[-HISTORY_RECENT:]]
        parts.append("## Recent experiments\n" + "\n".join(lines))
        crashes = [r for r in runs if r.status == "crash"][-CRASHES_SHOWN:]
        for c in crashes:
            parts.append(f"## Crash #{c.iteration}: {c.description}\n{c.crash_reason}\n" + c.error_tail[-1200:])
        seen = []
        for r in runs:
            d = r.description
            if d and d not in seen:
                seen.append(d)
        parts.append("## Every experiment tried so far (do not repeat any)\n" + "\n".join(f"- {d}" for d in seen[-300:]))
    if ctx.in_flight:
        parts.append("## Running now on other GPUs (do not propose these again)\n"
                     + "\n".join(f"- {r.description}" for r in ctx.in_flight[:16]))
    for path in scope:
        if path in ctx.files:
            parts.append(f"## {path} (current best version, editable)\n```\n{ctx.files[path]}\n```")
    for path, text in ctx.read_only.items():
        shown = text if len(text) <= READ_ONLY_LIMIT else text[:READ_ONLY_LIMIT] + f"\n… ({len(text) - READ_ONLY_LIMIT} more characters)"
        parts.append(f"## {path} (read-only evaluator: never edit)\n```\n{shown}\n```")
    if ctx.strategy_note:
        parts.append("## Note\n" + ctx.strategy_note)
    if ctx.crash and ctx.crash.crash_kind == "oom":
        c = ctx.crash
        parts.append(
            f"## Retry the last experiment at half the device batch\n#{c.iteration} ({c.description}) ran out of "
            f"memory:\n{c.crash_reason}\n{c.error_tail[-1500:]}\n"
            "Propose the SAME idea again with the per-device batch size halved and the effective batch kept: "
            "double the gradient accumulation steps where the script has them (e.g. DEVICE_BATCH_SIZE 64 -> 32 "
            "and GRAD_ACCUM_STEPS 1 -> 2; a script that derives its accumulation from a total batch keeps the "
            "effective batch by itself). Change nothing else; edit the current best version above. Begin the "
            f"description with the idea and end it with \"(retry of #{c.iteration} at half the device batch)\"."
        )
    elif ctx.crash:
        c = ctx.crash
        parts.append(
            f"## Fix the last experiment\n#{c.iteration} ({c.description}) crashed with a bug that looks "
            f"easy to fix:\n{c.crash_reason}\n{c.error_tail[-1500:]}\n"
            "Propose the SAME idea with the bug fixed (edit the current best version above)."
        )
    elif ctx.ideas:
        parts.append("## The user's idea: this experiment MUST implement it\n" + ctx.ideas[0]
                     + ("\n(queued after it: " + "; ".join(ctx.ideas[1:4]) + ")" if len(ctx.ideas) > 1 else ""))
    if ctx.feedback:
        parts.append("## Your previous answer was rejected\n" + "\n".join(f"- {f}" for f in ctx.feedback[-3:])
                     + "\nAnswer again, fixing that.")
    parts.append("Propose the next experiment now.")
    return [{"role": "system", "content": system}, {"role": "user", "content": "\n\n".join(parts)}]
