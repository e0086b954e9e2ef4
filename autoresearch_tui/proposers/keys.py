"""Which environment variable holds each provider's key, and the warning when it is missing.

Kept apart from the LLM proposer so that `check` (the engine's preflight) can warn without
importing anything that leads to litellm.
"""

from __future__ import annotations

import os

from ..config import Config

PROVIDER_ENV = {
    "openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY", "gemini": "GEMINI_API_KEY",
    "mistral": "MISTRAL_API_KEY", "groq": "GROQ_API_KEY", "deepseek": "DEEPSEEK_API_KEY",
    "openrouter": "OPENROUTER_API_KEY", "together_ai": "TOGETHER_API_KEY", "xai": "XAI_API_KEY",
}


def key_status(cfg: Config) -> str:
    """A warning when the model's provider key is missing (none is needed with api_base)."""
    p = cfg.proposer
    if p.api_base:
        return ""
    provider = p.model.split("/", 1)[0] if "/" in p.model else "openai"
    env = PROVIDER_ENV.get(provider)
    if env and not os.environ.get(env):
        return f"{cfg.path.name}: [proposer] model '{p.model}' needs {env} in the environment (or set api_base for a local server)"
    return ""
