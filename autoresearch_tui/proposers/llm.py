"""The LLM proposer: any model litellm can reach, answering with SEARCH/REPLACE edits (or the
other forms `answers` accepts: a unified diff, a whole file, `NAME = value` lines).

* litellm is imported lazily, in a thread, after setting the environment so that it fetches
  nothing from the network (local cost map), loads no `.env` and prints nothing.
* We own the retries: backoff on 429 / 5xx / connection errors, a hard deadline per request
  (`asyncio.wait_for`), a bounded number of attempts; litellm's and the OpenAI client's own
  retries are switched off. A request that reached its deadline is given up and not sent again
  (the server may still be working on it; the loop asks again in a later round). Every retry is
  reported to the loop (`ProposalContext.report`): the log says why nothing happens. Then
  ProposalError, with the kind of failure: the loop records a failed round, runs the fallback
  proposer meanwhile and, after a few, says what to fix (`fix_hint`).
* Every error text is redacted (key values from the environment, `sk-…`, bearer tokens)
  before it goes anywhere.
"""

from __future__ import annotations

import asyncio
import os
import random
from typing import Any, Callable

from ..config import Config
from .answers import parse_answer  # noqa: F401 - parse_answer: the llm proposer's API
from .base import Exchange, Proposal, ProposalContext, ProposalError, Proposer
from .keys import PROVIDER_ENV, key_status  # noqa: F401 - key_status: the llm proposer's API
from .prompt import build_messages
from .redact import redact  # noqa: F401 - redact: the llm proposer's API

_litellm: Any = None


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

    @staticmethod
    def classify(exc: BaseException) -> str:
        """The kind of a failed request: timeout | rate_limit | server | connection | auth | model | ""."""
        name = type(exc).__name__
        if isinstance(exc, (asyncio.TimeoutError, TimeoutError)) or "Timeout" in name:
            return "timeout"
        status = getattr(exc, "status_code", None)
        text = str(exc).lower()
        if isinstance(exc, ConnectionError) or "APIConnection" in name or "connection error" in text or "connection refused" in text:
            return "connection"  # (litellm reports a refused connection as an InternalServerError)
        if status == 429 or "RateLimit" in name:
            return "rate_limit"
        if status in (401, 403) or "Authentication" in name or "PermissionDenied" in name:
            return "auth"
        if status == 404 or "NotFound" in name:
            return "model"
        if isinstance(status, int) and status >= 500 or any(k in name for k in ("ServiceUnavailable", "InternalServer", "BadGateway")):
            return "server"
        if "BadRequest" in name and "model" in str(exc).lower():
            return "model"
        return ""

    async def _complete(self, messages: list[dict[str, str]], temperature: float,
                        report: Callable[[str], None] | None = None) -> Any:
        litellm = await asyncio.to_thread(load_litellm)
        kwargs: dict[str, Any] = dict(
            model=self.model, messages=messages, temperature=temperature, max_tokens=self.max_tokens,
            timeout=self.deadline, num_retries=0, max_retries=0,
        )
        if self.api_base:
            kwargs["api_base"] = self.api_base
            if not any(os.environ.get(v) for v in PROVIDER_ENV.values()):
                kwargs["api_key"] = "not-needed"  # local servers accept anything
        exchange = Exchange(self.model, messages)
        last = ""
        for attempt in range(1, self.max_attempts + 1):
            try:
                return await asyncio.wait_for(litellm.acompletion(**kwargs), timeout=self.deadline)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - classify, redact, retry or give up
                kind = self.classify(e)
                last = redact(f"{type(e).__name__}: {e}")[:400]
                if kind == "timeout":
                    # the client gave up on it: not sent again (a slow or stuck server would only
                    # get a second copy to work on); the loop asks in a later round
                    raise ProposalError(f"no answer within {self.deadline:g} s (request_timeout_s); the request was given up, "
                                        "not retried", kind=kind, exchange=exchange) from None
                if kind not in ("rate_limit", "server", "connection") or attempt == self.max_attempts:
                    raise ProposalError(f"LLM request failed after {attempt} attempt(s): {last}", kind=kind, exchange=exchange) from None
                delay = min(30.0, self.backoff_base * 2 ** (attempt - 1)) * (0.75 + 0.5 * random.random())
                if report is not None:
                    report(f"attempt {attempt}/{self.max_attempts} failed ({last[:160]}); retrying in {delay:.0f} s")
                await asyncio.sleep(delay)
        raise ProposalError(f"LLM request failed: {last}", exchange=exchange)

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
        resp = await self._complete(messages, min(2.0, ctx.temperature), ctx.report)
        tokens, cost = self._account(resp)
        try:
            text = resp.choices[0].message.content or ""
        except (AttributeError, IndexError, TypeError):
            text = ""
        desc, hyp, edits = parse_answer(text[:200_000], self.scope, ctx.files)
        return Proposal(
            description=desc or "(no description)",
            hypothesis=hyp,
            edits=edits,
            idea=ctx.crash.idea if ctx.crash else (ctx.ideas[0] if ctx.ideas else ""),
            tokens=tokens,
            cost_usd=cost,
            repair_of=ctx.crash.iteration if ctx.crash else None,
            exchange=Exchange(self.model, messages, text[:200_000]),
        )

    def fix_hint(self, kind: str, reason: str) -> str:
        """What to fix, naming the model, the server address and the key (never its value)."""
        provider = self.model.split("/", 1)[0] if "/" in self.model else "openai"
        env = PROVIDER_ENV.get(provider, "")
        key = (f"{env} ({'set' if os.environ.get(env) else 'not set'} in the environment)" if env
               else "the provider's key in the environment")
        server = self.api_base or f"the {provider} default"
        facts = f"model '{self.model}' ([proposer] model), server {server} ([proposer] api_base), key {key}"
        likely = {
            "auth": f"the server refused the key: check {env or 'the key'}",
            "model": f"{server} answers 'not found': check [proposer] model '{self.model}' (and, for vLLM or llama.cpp, "
                     "that api_base ends in /v1)",
            "connection": f"nothing answers at {server}: start the server or fix [proposer] api_base",
            "timeout": f"{server} gives no answer within {self.deadline:g} s: is it running and is the model loaded? "
                       "(or raise request_timeout_s)",
            "rate_limit": "the provider rate-limits the requests (429): wait, raise the account's limits or use another model",
            "server": f"{server} answers with server errors: it may be down or overloaded",
            "format": f"the model answers, but not with usable edits: try a stronger model than '{self.model}' "
                      "(its raw answers are in .autoresearch/proposals/)",
        }.get(kind, "check the model, the server and the key")
        return f"{likely}. Check: {facts}"
