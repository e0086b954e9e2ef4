"""The setup wizard (Phase 0): every field with a detected default, inline validation with the
engine's own messages, a confirmation table, and the file written with tomli-w."""

from __future__ import annotations

import asyncio
import re
import shlex
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, DataTable, Footer, Input, Label, Select, Static

from ... import detect
from ...config import Config, ConfigError, default_tag, from_dict, save
from ...engine.gpus import SlotPlanError, plan_slots, visible_gpus
from ...engine.ledger import GitError
from ...engine.preflight import preflight, repository_problem
from ...engine.repoinit import folder_files, init_repository, is_repository

# the one wording of the default kill rule (config.ResearchConfig.effective_timeout): the hint and
# the review table both say it
KILL_RULE = "the larger of 2 × budget and budget + 30 s"

# (id, label, hint)
FIELDS = [
    ("goal", "Goal", "one line, shown in the app and given to the LLM"),
    ("files_in_scope", "Files in scope", "comma-separated: the only files an experiment may change"),
    ("read_only", "Read-only evaluator", "comma-separated: hashed, never changed"),
    ("command", "Command", "one experiment, run in the repository's top folder"),
    ("time_budget_s", "Time budget (s)", "training seconds per experiment (required), e.g. 300"),
    ("timeout_s", "Kill after (s)", "empty = " + "{kill_rule}"),
    ("max_iterations", "Max iterations", "0 = until stopped"),
    ("slots", "Experiments at once", '"auto" = one per GPU ({gpus} visible), or a number; several run in worktrees of their own'),
    ("metric", "Metric", "its name as the log prints it (name: value)"),
    ("min_delta", "Minimum improvement", "keep only if better by more than this"),
    ("baseline_runs", "Baseline runs", "3 measures run-to-run noise (then keep policy margin/confirm); 1 = off"),
    ("branch_tag", "Branch tag", "the branch is autoresearch/<tag>"),
    ("guard_command", "Guard command", "optional: must pass before a keep (e.g. pytest -x -q)"),
    ("model", "LLM model", "litellm model string (proposer llm)"),
    ("api_base", "LLM api_base", "optional local server, e.g. http://127.0.0.1:11434"),
]


def _split(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


class WizardScreen(Screen[Config | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="wizard-cancel"),
                Binding("ctrl+s", "review", "Review", id="wizard-review")]

    def __init__(self, path: Path, env: dict[str, str] | None = None, probe_local: bool = True,
                 platform: dict[str, Any] | None = None, tag: str | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        self.root = self.path.resolve().parent
        self.env = env
        self.probe_local = probe_local
        self.platform: dict[str, Any] = platform or {}
        self.tag = tag
        self.cfg: Config | None = None
        self._invalid: str | None = None
        #: why this folder cannot hold a session yet (None: it can); cancelling then exits 2 with it
        self.problem: str | None = None
        self._offer = ""  # the folder is no repository: what `git init` + commit would take

    def defaults(self) -> dict[str, str]:
        train = detect.training_script(self.root)
        ev = detect.evaluator(self.root, train)
        metric = detect.guess_metric(self.root, [*ev, train])
        prop = detect.proposer_defaults(self.env, self.probe_local)
        self._proposer_why = prop["why"]
        self._gpus = visible_gpus()
        return {
            "goal": f"{detect.guess_direction(metric)} {metric}",
            "files_in_scope": train,
            "read_only": ", ".join(ev),
            "command": f"python {shlex.quote(train)}",
            "time_budget_s": "",
            "timeout_s": "",
            "max_iterations": "0",
            "slots": "auto" if len(self._gpus) > 1 else "1",
            "metric": metric,
            "direction": detect.guess_direction(metric),
            "min_delta": "0",
            "baseline_runs": "1",
            "branch_tag": self.tag or default_tag(),
            "guard_command": "",
            "kind": prop["kind"],
            "model": prop["model"],
            "api_base": prop["api_base"],
        }

    def compose(self) -> ComposeResult:
        d = self.defaults()
        with VerticalScroll(id="wizard"):
            yield Label(f"[b]autoresearch-tui setup[/b] — folder {self.root.name}", id="wizard-title")
            yield Static("Platform: detecting…", id="wizard-platform")
            for fid, label, hint in FIELDS:
                if fid == "metric":
                    with Horizontal(classes="field-row"):
                        yield Label("Direction", classes="field-label")
                        yield Select([("minimize", "minimize"), ("maximize", "maximize")], value=d["direction"],
                                     allow_blank=False, id="f-direction", classes="field-input")
                if fid == "guard_command":
                    with Horizontal(classes="field-row"):
                        yield Label("Keep policy", classes="field-label")
                        yield Select([("strict (any improvement)", "strict"), ("margin (beyond the noise)", "margin"),
                                      ("confirm (re-run the marginal)", "confirm")], value="strict",
                                     allow_blank=False, id="f-keep_policy", classes="field-input")
                if fid == "model":
                    with Horizontal(classes="field-row"):
                        yield Label("Proposer", classes="field-label")
                        yield Select([("mutate (offline)", "mutate"), ("llm (litellm)", "llm")], value=d["kind"],
                                     allow_blank=False, id="f-kind", classes="field-input")
                    yield Static(f"detected: {self._proposer_why}", classes="field-hint")
                hint = hint.format(kill_rule=KILL_RULE, gpus=len(self._gpus))
                with Horizontal(classes="field-row"):
                    yield Label(label, classes="field-label")
                    yield Input(value=d[fid], placeholder=hint, id=f"f-{fid}", classes="field-input")
                yield Static(hint, classes="field-hint", markup=False)
            yield DataTable(id="confirm-table", show_cursor=False)
        # the message and the buttons stay on screen whatever the form's scroll (never below the fold)
        with Vertical(id="wizard-bar"):
            yield Static("", id="wizard-error", markup=False)
            yield Static("", id="wizard-ok", markup=False)
            with Horizontal(id="wizard-buttons"):
                yield Button("Review (ctrl+s)", variant="primary", id="review")
                yield Button("Write autoresearch.toml and start", variant="success", id="start", disabled=True)
                yield Button("git init + commit these files", variant="warning", id="git-init")
                yield Button("Cancel", id="cancel")
        yield Footer()

    def on_mount(self) -> None:
        t = self.query_one("#confirm-table", DataTable)
        t.add_column("Parameter", key="p")
        t.add_column("Value", key="v")
        t.display = False
        self.query_one("#git-init", Button).display = False
        self.validate()
        self.check_repository()
        if self.platform:
            self._show_platform(self.platform)
        else:
            self.detect_platform()

    def _show_platform(self, info: dict[str, Any]) -> None:
        self.platform = info
        text = f"Platform: {info.get('summary')} · " + "; ".join(info.get("advice", [])[:1])
        self.query_one("#wizard-platform", Static).update(text)

    @work(thread=True)
    def detect_platform(self) -> None:
        from ...engine.platform import detect as detect_platform

        info = detect_platform()
        self.app.call_from_thread(self._show_platform, info)

    # ------------------------------------------------------------ repository
    @work(thread=True, group="wizard-repo")
    def check_repository(self) -> None:
        """Not a repository: offer to make it one. Another problem (not the top folder, no
        commits): say it; the command line refuses those before the wizard anyway."""
        if not is_repository(self.root):
            problem, offer = repository_problem(self.root), folder_files(self.root).describe()
        else:
            problem, offer = repository_problem(self.root), ""
        if problem:
            self.app.call_from_thread(self._set_problem, problem, offer)

    def _set_problem(self, problem: str | None, offer: str = "") -> None:
        self.problem, self._offer = problem, offer
        init = self.query_one("#git-init", Button)
        init.display = bool(offer)
        self.query_one("#review", Button).display = problem is None
        self.query_one("#start", Button).display = problem is None
        self.validate()
        if offer:
            init.focus()

    @work(thread=True, exclusive=True, group="wizard-repo")
    def _git_init(self) -> None:
        try:
            sha = init_repository(self.root)
        except (GitError, OSError) as e:
            self.app.call_from_thread(self._init_failed, str(e))
            return
        self.app.call_from_thread(self._init_done, sha)

    def _init_failed(self, why: str) -> None:
        self.query_one("#wizard-error", Static).update(f"{self.root}: git init failed ({why}); run it by hand, then start again")
        self.query_one("#git-init", Button).disabled = False

    def _init_done(self, sha: str) -> None:
        self._set_problem(None)
        self.query_one("#wizard-ok", Static).update(f"✓ created a git repository here; the files are commit {sha[:7]} — now fill in the form")
        self.app.notify(f"git init: the files of {self.root.name} are commit {sha[:7]}", timeout=5)
        self.query_one("#f-time_budget_s", Input).focus()

    # ------------------------------------------------------------ validation
    def value(self, fid: str) -> str:
        return self.query_one(f"#f-{fid}", Input).value.strip()

    def build(self) -> Config:
        def num(fid: str, default: str = "0") -> float:
            raw = self.value(fid) or default
            try:
                return float(raw)
            except ValueError:
                raise ConfigError(f"{self.path.name}: [research] {fid} must be a number (got {raw!r})") from None

        if not self.value("time_budget_s"):
            raise ConfigError(f"{self.path.name}: [research] time_budget_s is not set; type the seconds of training per experiment, e.g. 300")
        mi = self.value("max_iterations") or "0"
        if not mi.isdigit():
            raise ConfigError(f"{self.path.name}: [research] max_iterations must be a whole number, 0 = until stopped (got {mi!r})")
        slots_raw = self.value("slots") or "1"
        if not (slots_raw == "auto" or slots_raw.isdigit()):
            raise ConfigError(f'{self.path.name}: [compute] slots must be a whole number or "auto" (got {slots_raw!r})')
        br = self.value("baseline_runs") or "1"
        if not br.isdigit():
            raise ConfigError(f"{self.path.name}: [metric] baseline_runs must be a whole number, e.g. 3 (got {br!r})")
        try:
            min_delta = float(self.value("min_delta") or "0")
        except ValueError:
            raise ConfigError(f"{self.path.name}: [metric] min_delta must be a number (got {self.value('min_delta')!r})") from None
        data = {
            "research": {
                "goal": self.value("goal"),
                "files_in_scope": _split(self.value("files_in_scope")),
                "read_only": _split(self.value("read_only")),
                "command": self.value("command"),
                "time_budget_s": num("time_budget_s"),
                "timeout_s": num("timeout_s"),
                "max_iterations": int(mi),
                "branch_tag": self.value("branch_tag"),
                "guard_command": self.value("guard_command"),
            },
            "metric": {
                "name": self.value("metric"),
                "direction": str(self.query_one("#f-direction", Select).value),
                "min_delta": min_delta,
                "baseline_runs": int(br),
                "keep_policy": str(self.query_one("#f-keep_policy", Select).value),
            },
            "proposer": {
                "kind": str(self.query_one("#f-kind", Select).value),
                "model": self.value("model"),
                "api_base": self.value("api_base"),
            },
            "compute": {"slots": slots_raw if slots_raw == "auto" else int(slots_raw)},
        }
        cfg = from_dict(data, self.path)
        try:
            self._plan = plan_slots(cfg, visible=self._gpus)
        except SlotPlanError as e:
            raise ConfigError(str(e)) from None
        for key in ("files_in_scope", "read_only"):
            for f in getattr(cfg.research, key):
                if not (self.root / f).is_file():
                    raise ConfigError(f"{self.path.name}: [research] {key} entry '{f}' does not exist in {self.root}; fix the path")
        return cfg

    def validate(self) -> Config | None:
        err = self.query_one("#wizard-error", Static)
        ok = self.query_one("#wizard-ok", Static)
        if self.problem:
            err.update(self.problem)
            ok.update(f"Create the repository here? git init, then one commit of {self._offer}" if self._offer else "")
            self.query_one("#start", Button).disabled = True
            self._invalid = None
            return None
        try:
            cfg = self.build()
        except ConfigError as e:
            err.update(str(e))
            ok.update("")
            self.query_one("#start", Button).disabled = True
            self._invalid = self._field_of(str(e))
            return None
        self._invalid = None
        err.update("")
        ok.update("✓ valid — press Review")
        return cfg

    def _field_of(self, message: str) -> str | None:
        """The form field a configuration message names (`[section] key ...`), if any."""
        m = re.search(r"\] (\w+)", message)
        if not m:
            return None
        key = {"name": "metric"}.get(m.group(1), m.group(1))
        return key if self.query(f"#f-{key}") else None

    @on(Input.Changed)
    @on(Select.Changed)
    def _changed(self, _: Any) -> None:
        self.query_one("#start", Button).disabled = True
        self.query_one("#confirm-table", DataTable).display = False
        self.validate()

    # --------------------------------------------------------------- actions
    def action_review(self) -> None:
        if self.problem:
            self.app.bell()
            return
        cfg = self.validate()
        if cfg is None:
            # say it where the eye is: the field to fix gets the focus and comes into view
            if self._invalid:
                field = self.query_one(f"#f-{self._invalid}")
                field.focus()
                field.scroll_visible(animate=False)
            self.app.bell()
            return
        self.cfg = cfg
        r, m, p = cfg.research, cfg.metric, cfg.proposer
        rows = [
            ("Training script(s)", ", ".join(r.files_in_scope)),
            ("Read-only", ", ".join(r.read_only) or "(none)"),
            ("Command", r.command),
            ("Time budget / run", f"{r.time_budget_s:g} s (killed after {r.effective_timeout:g} s"
             + ("" if r.timeout_s > 0 else f": {KILL_RULE}") + ")"),
            ("Metric", f"{m.name} ({m.direction}), min_delta {m.min_delta:g}"),
            ("Keep policy", f"{m.keep_policy}, baseline runs {m.baseline_runs}" + (f", noise_k {m.noise_k:g}" if m.keep_policy != "strict" else "")),
            ("Max iterations", str(r.max_iterations or "unlimited")),
            ("At once", f"{self._plan.count} experiment(s)" + (
                " (" + "; ".join(f"slot {i}: GPU {','.join(g)}" for i, g in enumerate(self._plan.gpus) if g) + ")"
                if any(self._plan.gpus) else (f" ({self._plan.note})" if self._plan.note else ""))),
            ("Branch", cfg.branch),
            ("Results file", r.results_file),
            ("Guard", r.guard_command or "none"),
            ("Proposer", p.kind + (f" · {p.model}" if p.kind == "llm" else "") + (f" · {p.api_base}" if p.api_base else "")),
            ("Platform", self.platform.get("summary", "detecting…")),
        ]
        t = self.query_one("#confirm-table", DataTable)
        t.clear()
        for k, v in rows:
            t.add_row(k, v)
        t.display = True
        t.scroll_visible(animate=False)
        start = self.query_one("#start", Button)
        start.disabled = False
        start.focus()

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed)
    async def _button(self, event: Button.Pressed) -> None:
        if event.button.id == "review":
            self.action_review()
        elif event.button.id == "cancel":
            self.action_cancel()
        elif event.button.id == "git-init":
            event.button.disabled = True
            self._git_init()
        elif event.button.id == "start" and self.cfg is not None:
            await self._start(self.cfg, event.button)

    async def _start(self, cfg: Config, start: Button) -> None:
        # the engine's own checks (detached HEAD, uncommitted changes to tracked files, files not
        # committed, the command's program, another instance) before anything is written
        start.disabled = True
        report = await asyncio.to_thread(preflight, cfg)
        if report.errors:
            more = f" (and {len(report.errors) - 1} more)" if len(report.errors) > 1 else ""
            self.query_one("#wizard-error", Static).update(report.errors[0] + more)
            self.query_one("#wizard-ok", Static).update("nothing written; fix it and press Review again")
            self.app.bell()
            return
        save(cfg, self.path)
        self.app.notify(f"wrote {self.path}", timeout=5)
        self.dismiss(cfg)
