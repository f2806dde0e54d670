"""Agents: the hybrid CRL agent (Algorithm 1) and env-only search agents (random search, ES,
CMA-ES, SB3 PPO; off-policy and bandit agents: replay policy gradient, GP bandit, racing,
StablePrompt's anchored policy, SB3 SAC/TD3/CrossQ/ARS).

The env-only agents act through the Gymnasium API alone, share one loop and its bookkeeping
(:class:`SearchAgent`; :class:`AskTellAgent` for those that own their loop) and return a
:class:`SearchResult` whose prompt ``crl-prompt eval`` can score. Every one is in the registry
(:mod:`crlprompt.agents.registry`) that ``crl-prompt compare --algos`` reads;
:func:`register_agent` adds one. Names load on first access, so that the registry can be read
without importing torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from ..lazy import lazy_exports

#: public name -> the submodule that defines it (imported on first access)
_LAZY = {
    "AgentSpec": "registry", "register_agent": "registry",
    "AskTellAgent": "base", "SearchAgent": "base", "SearchEvent": "base", "SearchResult": "base",
    "AnchoredPolicyAgent": "anchor", "CMAAgent": "cma", "CRLAgent": "crl", "CRLConfig": "crl", "ESAgent": "es",
    "GPBanditAgent": "bandit", "OffPolicyPGAgent": "offpolicy", "PPOPromptAgent": "sb3",
    "PromptVecEnv": "sb3_offpolicy", "SB3OffPolicyAgent": "sb3_offpolicy", "RaceResult": "racing",
    "RacingSearch": "racing", "race": "racing", "RandomSearch": "random_search",
}  # fmt: skip

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from .anchor import AnchoredPolicyAgent  # noqa: F401
    from .bandit import GPBanditAgent  # noqa: F401
    from .base import AskTellAgent, SearchAgent, SearchEvent, SearchResult  # noqa: F401
    from .cma import CMAAgent  # noqa: F401
    from .crl import CRLAgent, CRLConfig  # noqa: F401
    from .es import ESAgent  # noqa: F401
    from .offpolicy import OffPolicyPGAgent  # noqa: F401
    from .racing import RaceResult, RacingSearch, race  # noqa: F401
    from .random_search import RandomSearch  # noqa: F401
    from .registry import AgentSpec, register_agent  # noqa: F401
    from .sb3 import PPOPromptAgent  # noqa: F401
    from .sb3_offpolicy import PromptVecEnv, SB3OffPolicyAgent  # noqa: F401
