"""Agents: the hybrid CRL agent (Algorithm 1) and env-only RL agents (random search, ES bandit,
CMA-ES, SB3 PPO; off-policy and bandit agents: replay policy gradient, GP bandit, racing,
StablePrompt's anchored policy, SB3 SAC/TD3). The env-only agents act through the Gymnasium
API alone and return a :class:`SearchResult` whose prompt ``crl-prompt eval`` can score."""

from .anchor import AnchoredPolicyAgent
from .bandit import GPBanditAgent
from .base import SearchResult
from .cma import CMAAgent
from .crl import CRLAgent, CRLConfig
from .es import ESAgent
from .offpolicy import OffPolicyPGAgent
from .racing import RaceResult, RacingSearch, race
from .random_search import RandomSearch
from .sb3 import PPOPromptAgent
from .sb3_offpolicy import PromptVecEnv, SB3OffPolicyAgent

__all__ = [
    "AnchoredPolicyAgent",
    "CMAAgent",
    "CRLAgent",
    "CRLConfig",
    "ESAgent",
    "GPBanditAgent",
    "OffPolicyPGAgent",
    "PPOPromptAgent",
    "PromptVecEnv",
    "RaceResult",
    "RacingSearch",
    "RandomSearch",
    "SB3OffPolicyAgent",
    "SearchResult",
    "race",
]
