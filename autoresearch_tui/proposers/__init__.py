"""Proposers: where the next experiment comes from."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Edit, Proposal, ProposalContext, ProposalError, Proposer

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["Edit", "Proposal", "ProposalContext", "ProposalError", "Proposer", "make_fallback", "make_proposer"]


def make_proposer(cfg: "Config") -> Proposer:
    if cfg.proposer.kind == "llm":
        from .llm import LLMProposer

        return LLMProposer(cfg)
    from .mutate import MutateProposer

    return MutateProposer()


def make_fallback(cfg: "Config") -> Proposer | None:
    """The proposer that keeps a slot busy while the model fails (`[proposer] fallback`): the
    offline one for the llm proposer, none for the offline proposer itself."""
    if cfg.proposer.kind == "mutate" or cfg.proposer.fallback == "none":
        return None
    from .mutate import MutateProposer

    return MutateProposer()
