"""The LLM proposer: any model litellm can reach, answering with SEARCH/REPLACE edits.

* litellm is imported lazily, in a thread, after setting the environment so that it fetches
  nothing from the network (local cost map), loads no `.env` and prints nothing.
* We own the retries: backoff on 429 / 5xx / connection errors / timeouts, a hard deadline per
  request (`asyncio.wait_for`), a bounded number of attempts; litellm's and the OpenAI
  client's own retries are switched off. Then ProposalError: the loop records a failed
  proposal and goes on.
* Every error text is redacted (key values from the environment, `sk-…`, bearer tokens)
  before it goes anywhere.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
from typing import Any

from ..config import Config
from ..secrets import is_secret_name
from .keys import PROVIDER_ENV, key_status  # noqa: F401 - key_status: the llm proposer's API
from .base import Edit, Proposal, ProposalContext, ProposalError, Proposer
from .prompt import build_messages

_litellm: Any = None
_SECRET_SHAPES = [
    re.compile(r"sk-[A-Za-z0-9_\-]{8,}"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9_\-\.=]{8,}"),
    re.compile(r"(?i)(api[_-]?key[\"']?\s*[:=]\s*[\"']?)[A-Za-z0-9_\-\.]{8,}"),
]


def redact(text: str, env: dict[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    out = str(text)
    for k, v in env.items():
        if v and len(v) >= 6 and is_secret_name(k):
            out = out.replace(v, "***")
    for rx in _SECRET_SHAPES:
        out = rx.sub(lambda m: (m.group(1) if m.groups() else "") + "***", out)
    return out


def load_litellm() -> Any:
    """Import litellm once, quietly and offline. Call in a thread: it takes seconds."""
    global _litellm
    if _litellm is None:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        os.environ.setdefault("LITELLM_MODE", "PRODUCTION")
        os.environ.setdefault("LITELLM_LOG", "ERROR")
        import litellm

        litellm.suppress_debug_info = True
        litellm.telemetry = False
        litellm.drop_params = True
        _litellm = litellm
    return _litellm


# ------------------------------------------------------------------ parsing
_FENCE = re.compile(r"^\s*```[\w+-]*\s*$")
_BLOCK = re.compile(
    r"<{5,9} ?SEARCH[^\n]*\n(?P<search>.*?)\n?={5,9}[^\n]*\n(?P<replace>.*?)\n?>{5,9} ?REPLACE",
    re.DOTALL,
)


def _clean_path(line: str) -> str:
    s = line.strip().strip("`*#").strip()
    s = re.sub(r"^(file|path|filename)\s*[:=]\s*", "", s, flags=re.I).strip().strip("`*\"'").strip()
    return s


def parse_answer(text: str, scope: list[str]) -> tuple[str, str, list[Edit]]:
    """(description, hypothesis, edits) from a model's answer; tolerant of fences and spacing."""
    text = text.replace("\r\n", "\n")
    desc = hyp = ""
    m = re.search(r"^\W*DESCRIPTION\W*[:\-]\s*(.+)$", text, re.M | re.I)
    if m:
        desc = m.group(1).strip().strip("*").strip()
    m = re.search(r"^\W*HYPOTHESIS\W*[:\-]\s*(.+)$", text, re.M | re.I)
    if m:
        hyp = m.group(1).strip().strip("*").strip()
    edits: list[Edit] = []
    for b in _BLOCK.finditer(text):
        before = text[: b.start()].rstrip("\n").split("\n")
        path = ""
        for line in reversed(before[-4:]):
            if not line.strip() or _FENCE.match(line):
                continue
            cand = _clean_path(line)
            if cand and " " not in cand and (("." in cand) or "/" in cand):
                path = cand
            break
        if not path and len(scope) == 1:
            path = scope[0]
        edits.append(Edit(path, b.group("search"), b.group("replace")))
    if not desc:
        first = next((ln.strip() for ln in text.splitlines() if ln.strip() and not _FENCE.match(ln)), "")
        desc = first[:120] if edits else ""
    return desc[:200], hyp[:300], edits


# --------------------------------------------------------------- the client
class LLMProposer(Proposer):
    name = "llm"
    pipelined = True

    def __init__(self, cfg: Config):
        self.cfg = cfg
        p = cfg.proposer
        self.model = p.model
        self.api_base = p.api_base
        self.temperature = p.temperature
        self.deadline = p.request_timeout_s
        self.max_attempts = p.max_attempts
        self.max_tokens = p.max_tokens
        self.scope = cfg.research.files_in_scope
        self._cost = 0.0
        self._tokens = 0
        self.backoff_base = 1.0

    @property
    def total_cost(self) -> float:
        return self._cost

    @property
    def total_tokens(self) -> int:
        return self._tokens

    def _retryable(self, exc: BaseException) -> bool:
        if isinstance(exc, (asyncio.TimeoutError, TimeoutError, ConnectionError)):
            return True
        status = getattr(exc, "status_code", None)
        if isinstance(status, int):
            return status == 429 or status == 408 or status >= 500
        name = type(exc).__name__
        return any(k in name for k in ("RateLimit", "Timeout", "APIConnection", "ServiceUnavailable", "InternalServer", "BadGateway"))

    async def _complete(self, messages: list[dict[str, str]], temperature: float) -> Any:
        litellm = await asyncio.to_thread(load_litellm)
        kwargs: dict[str, Any] = dict(
            model=self.model, messages=messages, temperature=temperature, max_tokens=self.max_tokens,
            timeout=self.deadline, num_retries=0, max_retries=0,
        )
        if self.api_base:
            kwargs["api_base"] = self.api_base
            if not any(os.environ.get(v) for v in PROVIDER_ENV.values()):
                kwargs["api_key"] = "not-needed"  # local servers accept anything
        last = ""
        for attempt in range(1, self.max_attempts + 1):
            try:
                return await asyncio.wait_for(litellm.acompletion(**kwargs), timeout=self.deadline)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - classify, redact, retry or give up
                last = redact(f"{type(e).__name__}: {e}")[:400]
                if isinstance(e, asyncio.TimeoutError):
                    last = f"no answer within {self.deadline:g} s (request_timeout_s)"
                if not self._retryable(e) or attempt == self.max_attempts:
                    raise ProposalError(f"LLM request failed after {attempt} attempt(s): {last}") from None
                delay = min(30.0, self.backoff_base * 2 ** (attempt - 1)) * (0.75 + 0.5 * random.random())
                await asyncio.sleep(delay)
        raise ProposalError(f"LLM request failed: {last}")

    def _account(self, resp: Any) -> tuple[int, float]:
        tokens = 0
        try:
            tokens = int(resp.usage.total_tokens or 0)
        except (AttributeError, TypeError, ValueError):
            pass
        cost = 0.0
        try:
            cost = float(load_litellm().completion_cost(completion_response=resp) or 0.0)
        except Exception:  # noqa: BLE001 - models without a price (local servers): tokens only
            cost = 0.0
        self._tokens += tokens
        self._cost += cost
        return tokens, cost

    async def propose(self, ctx: ProposalContext) -> Proposal:
        messages = build_messages(ctx, self.scope, self.cfg.research.read_only)
        resp = await self._complete(messages, min(2.0, ctx.temperature))
        tokens, cost = self._account(resp)
        try:
            text = resp.choices[0].message.content or ""
        except (AttributeError, IndexError, TypeError):
            text = ""
        desc, hyp, edits = parse_answer(text[:200_000], self.scope)
        return Proposal(
            description=desc or "(no description)",
            hypothesis=hyp,
            edits=edits,
            idea=ctx.crash.idea if ctx.crash else (ctx.ideas[0] if ctx.ideas else ""),
            tokens=tokens,
            cost_usd=cost,
            repair_of=ctx.crash.iteration if ctx.crash else None,
        )
