"""Proposers: where the next experiment comes from."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Edit, Proposal, ProposalContext, ProposalError, Proposer

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["Edit", "Proposal", "ProposalContext", "ProposalError", "Proposer", "make_proposer"]


def make_proposer(cfg: "Config") -> Proposer:
    if cfg.proposer.kind == "llm":
        from .llm import LLMProposer

        return LLMProposer(cfg)
    from .mutate import MutateProposer

    return MutateProposer()
