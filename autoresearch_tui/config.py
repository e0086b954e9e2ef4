"""`autoresearch.toml`: schema, defaults, validation with one-line messages, writing.

Every message names the file, the key and what to do. Unknown keys are errors (a typo in a
key would otherwise silently fall back to a default for a whole night).
"""

from __future__ import annotations

import datetime as _dt
import difflib
import re
import shlex
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .fsio import atomic_write_text

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

CONFIG_NAME = "autoresearch.toml"
DIRECTIONS = ("minimize", "maximize")
PROPOSER_KINDS = ("mutate", "llm")
KEEP_POLICIES = ("strict", "margin", "confirm")
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


@dataclass
class UIConfig:
    theme: str = ""


SECTIONS: dict[str, type] = {
    "research": ResearchConfig,
    "metric": MetricConfig,
    "proposer": ProposerConfig,
    "ui": UIConfig,
}


@dataclass
class Config:
    research: ResearchConfig = field(default_factory=ResearchConfig)
    metric: MetricConfig = field(default_factory=MetricConfig)
    proposer: ProposerConfig = field(default_factory=ProposerConfig)
    ui: UIConfig = field(default_factory=UIConfig)
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
        return float(value)
    if t == "list[str]":
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
    if not r.results_file.strip() or Path(r.results_file).is_absolute() or ".." in Path(r.results_file).parts:
        raise ConfigError(f'{file}: [research] results_file must be a file name inside the repository, e.g. "results.tsv"')
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
    if p.max_tokens < 256:
        raise ConfigError(f"{file}: [proposer] max_tokens must be at least 256 (got {p.max_tokens})")
    if p.api_base and not re.match(r"^https?://", p.api_base):
        raise ConfigError(f'{file}: [proposer] api_base must start with http:// or https:// (got {p.api_base!r})')


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
