"""`autoresearch.toml`: schema, defaults, validation with one-line messages, writing.

Every message names the file, the key and what to do. Unknown keys are errors (a typo in a
key would otherwise silently fall back to a default for a whole night).
"""

from __future__ import annotations

import datetime as _dt
import difflib
import math
import re
import shlex
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .fsio import atomic_write_text

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

CONFIG_NAME = "autoresearch.toml"
DIRECTIONS = ("minimize", "maximize")
PROPOSER_KINDS = ("mutate", "llm")
FALLBACKS = ("mutate", "none")
KEEP_POLICIES = ("strict", "margin", "confirm")
EXECUTORS = ("local", "slurm")
_TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class ConfigError(Exception):
    """A configuration problem; `str()` is the one-line message shown to the user."""


def default_tag(today: _dt.date | None = None) -> str:
    today = today or _dt.date.today()
    return today.strftime("%b").lower() + str(today.day)


@dataclass
class ResearchConfig:
    goal: str = ""
    files_in_scope: list[str] = field(default_factory=lambda: ["train.py"])
    read_only: list[str] = field(default_factory=lambda: ["prepare.py"])
    command: str = "python train.py"
    time_budget_s: float = 300.0
    timeout_s: float = 0.0  # 0 = default (see effective_timeout)
    kill_grace_s: float = 10.0
    max_iterations: int = 0
    branch_tag: str = ""
    guard_command: str = ""
    program: str = "program.md"
    results_file: str = "results.tsv"
    oom_retry: bool = True  # an idea that ran out of memory is retried once at half the device batch
    early_stop: str = "conservative"  # off | conservative | aggressive (only where the log shows a curve)
    sandbox: str = "auto"  # auto | bwrap | none: runs start inside bubblewrap (auto: when it works here)
    writable: list[str] = field(default_factory=list)  # more folders a sandboxed run may write (caches)
    network: bool = False  # a sandboxed run has no network unless this is true (trackers need it)
    keep_env: list[str] = field(default_factory=list)  # secret-looking variables a run still gets
    log_max_mb: float = 64.0  # a run's log is capped: past this, its middle is cut (head and tail kept)

    @property
    def effective_timeout(self) -> float:
        """Wall-clock kill: as configured, else twice the budget (upstream: 5 min / 10 min),
        never less than budget + 30 s so that start-up and evaluation of short runs fit."""
        if self.timeout_s > 0:
            return self.timeout_s
        return max(2 * self.time_budget_s, self.time_budget_s + 30)


@dataclass
class MetricConfig:
    name: str = "val_bpb"
    direction: str = "minimize"
    pattern: str = ""
    min_delta: float = 0.0
    secondary: list[str] = field(default_factory=lambda: ["peak_vram_mb", "training_seconds"])
    baseline_runs: int = 1
    keep_policy: str = "strict"
    noise_k: float = 2.5
    progress_pattern: str = ""  # a regex with named groups: loss, and pct | seconds | step (curves)


@dataclass
class ProposerConfig:
    kind: str = "mutate"
    model: str = ""
    api_base: str = ""
    temperature: float = 0.7
    max_cost_usd: float = 0.0
    request_timeout_s: float = 120.0
    max_attempts: int = 4
    repair_rounds: int = 2
    max_failed_rounds: int = 5
    pipeline: bool = True
    max_tokens: int = 4096
    fallback: str = "mutate"  # when a model's round fails, the slot runs the offline proposer's change


@dataclass
class ComputeConfig:
    slots: int | str = 1  # experiments at once; "auto" = one per visible GPU group (1 without GPUs)
    gpus_per_run: int = 1
    gpus: list[str] = field(default_factory=list)  # explicit GPU ids; empty = the visible ones
    link_untracked: bool = True  # slot worktrees link the repository's untracked top-level files (data, .venv)
    executor: str = "local"  # local | slurm
    # slurm: sbatch options; the worktrees must be on a filesystem the nodes share
    partition: str = ""
    account: str = ""
    gpu_flag: str = "gres"  # gres: --gres=gpu:K | gpus: --gpus=K | none
    time_limit: str = ""  # sbatch --time; empty = the run's timeout plus 2 minutes, in whole minutes
    extra_args: list[str] = field(default_factory=list)
    workdir: str = ""  # where the slots' worktrees live; empty = .autoresearch/worktrees
    pending_warn_s: float = 600.0  # a job pending longer is said in a notice and the slots pane


@dataclass
class UIConfig:
    theme: str = ""


NOTIFY_EVENTS = ("new_best", "session_end", "crash_streak", "paused", "stalled")


@dataclass
class NotifyConfig:
    urls: list[str] = field(default_factory=list)  # apprise URLs (ntfy://, slack://, mailto://, json://, ...)
    on: list[str] = field(default_factory=lambda: list(NOTIFY_EVENTS))


SECTIONS: dict[str, type] = {
    "research": ResearchConfig,
    "metric": MetricConfig,
    "proposer": ProposerConfig,
    "compute": ComputeConfig,
    "ui": UIConfig,
    "notify": NotifyConfig,
}


@dataclass
class Config:
    research: ResearchConfig = field(default_factory=ResearchConfig)
    metric: MetricConfig = field(default_factory=MetricConfig)
    proposer: ProposerConfig = field(default_factory=ProposerConfig)
    compute: ComputeConfig = field(default_factory=ComputeConfig)
    ui: UIConfig = field(default_factory=UIConfig)
    notify: NotifyConfig = field(default_factory=NotifyConfig)
    path: Path = Path(CONFIG_NAME)

    @property
    def root(self) -> Path:
        return self.path.resolve().parent

    @property
    def tag(self) -> str:
        return self.research.branch_tag or default_tag()

    @property
    def branch(self) -> str:
        return f"autoresearch/{self.tag}"

    def to_dict(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for section in SECTIONS:
            obj = getattr(self, section)
            out[section] = {f.name: getattr(obj, f.name) for f in fields(obj)}
        return out


def _type_name(t: Any) -> str:
    return {
        "str": "a string in quotes",
        "float": "a number",
        "int": "a whole number",
        "bool": "true or false",
        "list[str]": 'a list of strings, e.g. ["train.py"]',
        "int | str": 'a whole number or "auto"',
    }.get(str(t), str(t))


def _coerce(file: str, section: str, key: str, value: Any, t: Any) -> Any:
    where = f"{file}: [{section}] {key}"
    t = str(t)
    if t == "str":
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be {_type_name(t)} (got {value!r}); quote the value")
        return value
    if t == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false (got {value!r})")
        return value
    if t == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be {_type_name(t)} (got {value!r})")
        return value
    if t == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be {_type_name(t)} (got {value!r})")
        if not math.isfinite(value):
            raise ConfigError(f"{where} must be a finite number (got {value!r}); write a real value such as 300")
        return float(value)
    if t == "int | str":
        if isinstance(value, bool) or not (isinstance(value, int) or value == "auto"):
            raise ConfigError(f'{where} must be {_type_name(t)} (got {value!r})')
        return value
    if t == "list[str]":
        if key == "gpus" and isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            value = [str(v) for v in value]  # gpus = [0, 1] is as good as ["0", "1"]
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where} must be {_type_name(t)} (got {value!r})")
        return list(value)
    raise AssertionError(t)  # pragma: no cover


def _unknown(file: str, where: str, key: str, known: list[str]) -> ConfigError:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"did you mean '{close[0]}'?" if close else "known keys: " + ", ".join(known)
    return ConfigError(f"{file}: unknown key '{key}' in {where}; {hint} (remove or rename it)")


def from_dict(data: dict[str, Any], path: Path) -> Config:
    file = path.name if path.name else str(path)
    cfg = Config(path=path)
    for section, value in data.items():
        if section not in SECTIONS:
            raise _unknown(file, "the top level", section, list(SECTIONS))
        if not isinstance(value, dict):
            raise ConfigError(f"{file}: '{section}' must be a table: write [{section}] on its own line")
        cls = SECTIONS[section]
        types = {f.name: f.type for f in fields(cls)}
        obj = getattr(cfg, section)
        for key, v in value.items():
            if key not in types:
                raise _unknown(file, f"[{section}]", key, list(types))
            setattr(obj, key, _coerce(file, section, key, v, types[key]))
    validate(cfg)
    return cfg


def _check_rel_path(file: str, key: str, p: str) -> None:
    if not p.strip():
        raise ConfigError(f"{file}: [research] {key} has an empty path; remove it or name a file")
    pp = Path(p)
    if pp.is_absolute() or ".." in pp.parts:
        raise ConfigError(
            f"{file}: [research] {key} entry '{p}' must be a path inside the repository, "
            "relative to it (no absolute path, no '..')"
        )


def validate(cfg: Config) -> None:
    file = cfg.path.name
    r, m, p = cfg.research, cfg.metric, cfg.proposer
    if not r.files_in_scope:
        raise ConfigError(f'{file}: [research] files_in_scope is empty; list the files an experiment may change, e.g. ["train.py"]')
    for key in ("files_in_scope", "read_only"):
        for entry in getattr(r, key):
            _check_rel_path(file, key, entry)
    norm = lambda s: Path(s).as_posix()  # noqa: E731
    overlap = sorted({norm(a) for a in r.files_in_scope} & {norm(b) for b in r.read_only})
    if overlap:
        raise ConfigError(
            f"{file}: [research] files_in_scope and read_only both list {', '.join(overlap)}; "
            "a file is either changeable or fixed: remove it from one of them"
        )
    if not r.command.strip():
        raise ConfigError(f'{file}: [research] command is empty; set the command of one experiment, e.g. "python train.py"')
    try:
        shlex.split(r.command)
    except ValueError as e:
        raise ConfigError(f"{file}: [research] command cannot be parsed ({e}); check its quotes") from None
    if not r.time_budget_s > 0:
        raise ConfigError(f"{file}: [research] time_budget_s must be a positive number of seconds (got {r.time_budget_s:g}); e.g. 300")
    if r.timeout_s < 0:
        raise ConfigError(f"{file}: [research] timeout_s must be 0 (= default) or a number of seconds (got {r.timeout_s:g})")
    if 0 < r.timeout_s < r.time_budget_s:
        raise ConfigError(
            f"{file}: [research] timeout_s ({r.timeout_s:g}) is shorter than time_budget_s ({r.time_budget_s:g}); "
            "set it above the budget or to 0 for the default"
        )
    if r.kill_grace_s < 0:
        raise ConfigError(f"{file}: [research] kill_grace_s must be 0 or more seconds (got {r.kill_grace_s:g})")
    if r.max_iterations < 0:
        raise ConfigError(f"{file}: [research] max_iterations must be 0 (= until stopped) or more (got {r.max_iterations})")
    if r.branch_tag and not _TAG_RE.match(r.branch_tag):
        raise ConfigError(
            f"{file}: [research] branch_tag '{r.branch_tag}' is not a usable branch name; "
            "use letters, digits, '.', '_' or '-' (e.g. \"nov23\")"
        )
    if r.branch_tag and (".." in r.branch_tag or r.branch_tag.endswith((".lock", "."))):
        raise ConfigError(
            f"{file}: [research] branch_tag '{r.branch_tag}' is refused by git (git check-ref-format: no '..', "
            "no trailing '.' or '.lock'); pick another, e.g. \"nov23\""
        )
    if not r.results_file.strip() or Path(r.results_file).is_absolute() or ".." in Path(r.results_file).parts:
        raise ConfigError(f'{file}: [research] results_file must be a file name inside the repository, e.g. "results.tsv"')
    _check_results_file(file, r, cfg.path.name)
    if not r.log_max_mb > 0:
        raise ConfigError(f"{file}: [research] log_max_mb must be a positive number of megabytes (got {r.log_max_mb:g}); e.g. 64")
    if r.sandbox not in ("auto", "bwrap", "none"):
        raise ConfigError(f'{file}: [research] sandbox must be "auto", "bwrap" or "none" (got {r.sandbox!r})')
    for w in r.writable:
        wp = Path(w).expanduser()
        if not w.strip() or any(part in (".git", ".autoresearch") for part in wp.parts) or wp.as_posix() in ("/", "~"):
            raise ConfigError(f"{file}: [research] writable entry {w!r} would open the repository's records or the "
                              "whole disk to a run; name cache folders, e.g. \"~/.cache/torch\"")
    bad_env = [k for k in r.keep_env if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", k)]
    if bad_env:
        raise ConfigError(f"{file}: [research] keep_env entry {bad_env[0]!r} is not a variable name; list names, e.g. [\"WANDB_API_KEY\"]")
    if not re.match(r"^[A-Za-z_][A-Za-z0-9_.\-/]*$", m.name or ""):
        raise ConfigError(f'{file}: [metric] name must be the metric\'s name as the log prints it, e.g. "val_bpb" (got {m.name!r})')
    if m.direction not in DIRECTIONS:
        raise ConfigError(f'{file}: [metric] direction must be "minimize" or "maximize" (got {m.direction!r})')
    if m.pattern:
        try:
            rx = re.compile(m.pattern)
        except re.error as e:
            raise ConfigError(f"{file}: [metric] pattern is not a valid regular expression ({e}); fix it or leave it empty") from None
        if rx.groups != 1:
            raise ConfigError(
                f"{file}: [metric] pattern must have exactly one group (…) around the number (it has {rx.groups})"
            )
    if r.early_stop not in ("off", "conservative", "aggressive"):
        raise ConfigError(f'{file}: [research] early_stop must be "off", "conservative" or "aggressive" (got {r.early_stop!r})')
    if m.progress_pattern:
        try:
            prx = re.compile(m.progress_pattern)
        except re.error as e:
            raise ConfigError(f"{file}: [metric] progress_pattern is not a valid regular expression ({e}); fix it or leave it empty") from None
        if "loss" not in prx.groupindex or not {"pct", "seconds", "step"} & set(prx.groupindex):
            raise ConfigError(f"{file}: [metric] progress_pattern needs named groups (?P<loss>…) and one of (?P<pct>…), "
                              "(?P<seconds>…), (?P<step>…)")
    if m.min_delta < 0:
        raise ConfigError(f"{file}: [metric] min_delta must be 0 or more (got {m.min_delta:g})")
    if m.baseline_runs < 1 or m.baseline_runs > 20:
        raise ConfigError(f"{file}: [metric] baseline_runs must be between 1 and 20 (got {m.baseline_runs}); 3 gives a noise estimate")
    if m.keep_policy not in KEEP_POLICIES:
        raise ConfigError(f'{file}: [metric] keep_policy must be "strict", "margin" or "confirm" (got {m.keep_policy!r})')
    if m.noise_k < 0:
        raise ConfigError(f"{file}: [metric] noise_k must be 0 or more (got {m.noise_k:g})")
    if m.keep_policy != "strict" and m.baseline_runs < 2:
        raise ConfigError(f'{file}: [metric] keep_policy "{m.keep_policy}" needs a noise estimate: set baseline_runs to 3 (or more)')
    if p.kind not in PROPOSER_KINDS:
        raise ConfigError(f'{file}: [proposer] kind must be "mutate" or "llm" (got {p.kind!r})')
    if p.kind == "llm" and not p.model.strip():
        raise ConfigError(
            f'{file}: [proposer] model is empty but kind = "llm"; set a litellm model string, '
            'e.g. "openai/gpt-5" or "ollama/qwen3", or use kind = "mutate"'
        )
    if not 0 <= p.temperature <= 2:
        raise ConfigError(f"{file}: [proposer] temperature must be between 0 and 2 (got {p.temperature:g})")
    if p.max_cost_usd < 0:
        raise ConfigError(f"{file}: [proposer] max_cost_usd must be 0 (= no cap) or more (got {p.max_cost_usd:g})")
    if p.request_timeout_s <= 0:
        raise ConfigError(f"{file}: [proposer] request_timeout_s must be a positive number of seconds (got {p.request_timeout_s:g})")
    if p.max_attempts < 1:
        raise ConfigError(f"{file}: [proposer] max_attempts must be 1 or more (got {p.max_attempts})")
    if p.repair_rounds < 0:
        raise ConfigError(f"{file}: [proposer] repair_rounds must be 0 or more (got {p.repair_rounds})")
    if p.max_failed_rounds < 0:
        raise ConfigError(f"{file}: [proposer] max_failed_rounds must be 0 (= never give up) or more (got {p.max_failed_rounds})")
    if p.fallback not in FALLBACKS:
        raise ConfigError(f'{file}: [proposer] fallback must be "mutate" or "none" (got {p.fallback!r})')
    if p.max_tokens < 256:
        raise ConfigError(f"{file}: [proposer] max_tokens must be at least 256 (got {p.max_tokens})")
    c = cfg.compute
    if c.executor not in EXECUTORS:
        raise ConfigError(f'{file}: [compute] executor must be "local" or "slurm" (got {c.executor!r})')
    if c.executor == "slurm" and c.slots == "auto":
        raise ConfigError(f'{file}: [compute] slots = "auto" counts local GPUs; with executor = "slurm" set the most jobs in flight, e.g. 4')
    if c.gpu_flag not in ("gres", "gpus", "none"):
        raise ConfigError(f'{file}: [compute] gpu_flag must be "gres" (--gres=gpu:K), "gpus" (--gpus=K) or "none" (got {c.gpu_flag!r})')
    if c.time_limit and not re.match(r"^(\d+-)?\d+(:\d{1,2}){0,2}$", c.time_limit):
        raise ConfigError(f'{file}: [compute] time_limit must be in sbatch --time form, e.g. "0:20:00" or "90" minutes (got {c.time_limit!r})')
    if c.workdir and (".." in Path(c.workdir).parts):
        raise ConfigError(f"{file}: [compute] workdir must not contain '..'; name a folder the nodes share, absolute or inside the repository")
    if not c.pending_warn_s > 0:
        raise ConfigError(f"{file}: [compute] pending_warn_s must be a positive number of seconds (got {c.pending_warn_s:g})")
    if isinstance(c.slots, int) and not 1 <= c.slots <= 64:
        raise ConfigError(f'{file}: [compute] slots must be between 1 and 64, or "auto" (got {c.slots})')
    if not 1 <= c.gpus_per_run <= 64:
        raise ConfigError(f"{file}: [compute] gpus_per_run must be between 1 and 64 (got {c.gpus_per_run})")
    bad = [g for g in c.gpus if not re.match(r"^[A-Za-z0-9_-]+$", g)]
    if bad:
        raise ConfigError(f"{file}: [compute] gpus entry {bad[0]!r} is not a GPU id; list ids as CUDA_VISIBLE_DEVICES takes them, e.g. [0, 1]")
    if len(set(c.gpus)) != len(c.gpus):
        raise ConfigError(f"{file}: [compute] gpus lists a GPU twice; two runs must never share one")
    if c.gpus and isinstance(c.slots, int) and c.slots * c.gpus_per_run > len(c.gpus):
        raise ConfigError(
            f"{file}: [compute] slots = {c.slots} with gpus_per_run = {c.gpus_per_run} needs {c.slots * c.gpus_per_run} GPUs "
            f"but gpus lists {len(c.gpus)}; lower slots or list more GPUs"
        )
    _validate_notify(file, cfg.notify)
    if p.api_base and not re.match(r"^https?://", p.api_base):
        raise ConfigError(f'{file}: [proposer] api_base must start with http:// or https:// (got {p.api_base!r})')
    if p.api_base:
        try:
            u = urlsplit(p.api_base)
            u.port  # noqa: B018 - raises on a bad port
            ok = bool(u.hostname) and not any(c.isspace() for c in p.api_base)
        except ValueError:
            ok = False
        if not ok:
            raise ConfigError(f'{file}: [proposer] api_base {p.api_base!r} is not a valid URL; e.g. "http://127.0.0.1:11434"')


def _validate_notify(file: str, n: NotifyConfig) -> None:
    """Messages name the entry by its number: a notification URL carries its secret (a token,
    a webhook path, a password) and is never printed."""
    for i, url in enumerate(n.urls, 1):
        if not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://\S", url) or any(c.isspace() for c in url):
            raise ConfigError(f"{file}: [notify] urls entry {i} is not an apprise URL (scheme://…, e.g. \"ntfys://my-topic\"); "
                              "see https://github.com/caronc/apprise/wiki")
    bad = [e for e in n.on if e not in NOTIFY_EVENTS]
    if bad:
        raise ConfigError(f"{file}: [notify] on lists {bad[0]!r}; the events are " + ", ".join(f'"{e}"' for e in NOTIFY_EVENTS))


def _check_results_file(file: str, r: ResearchConfig, config_name: str) -> None:
    """The results file is the tool's own: never tracked code, the evaluator or inside .git."""
    res = Path(r.results_file).as_posix()
    if Path(res).parts[0] in (".git", ".autoresearch"):
        raise ConfigError(f'{file}: [research] results_file {r.results_file!r} is inside {Path(res).parts[0]}/; '
                          'name a file in the repository, e.g. "results.tsv"')
    for key in ("files_in_scope", "read_only"):
        if res in {Path(x).as_posix() for x in getattr(r, key)}:
            raise ConfigError(f"{file}: [research] results_file {r.results_file!r} is also listed in {key}; "
                              "the results are the tool's file: name another")
    if res == config_name:
        raise ConfigError(f"{file}: [research] results_file is the configuration file itself; name another, e.g. \"results.tsv\"")


def load(path: str | Path) -> Config:
    path = Path(path)
    file = path.name
    if not path.exists():
        raise ConfigError(
            f"{path}: no configuration file here; run autoresearch-tui (the setup wizard) "
            f"or copy autoresearch.toml.example to {CONFIG_NAME}"
        )
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{path}: cannot be read ({e.strerror}); check its permissions") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{file}: is not UTF-8 text; save it as UTF-8") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{file}: invalid TOML ({e}); fix the syntax at that line") from None
    return from_dict(data, path)


def dumps(cfg: Config) -> str:
    import tomli_w

    return tomli_w.dumps(cfg.to_dict())


def save(cfg: Config, path: Path | None = None) -> Path:
    path = Path(path or cfg.path)
    atomic_write_text(path, dumps(cfg))
    return path
