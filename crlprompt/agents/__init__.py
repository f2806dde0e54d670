"""Agents: the hybrid CRL agent (Algorithm 1) and env-only RL agents (random search, ES bandit,
SB3 PPO). The env-only agents act through the Gymnasium API alone and return a
:class:`SearchResult` whose prompt ``crl-prompt eval`` can score."""

from .base import SearchResult
from .cma import CMAAgent
from .crl import CRLAgent, CRLConfig
from .es import ESAgent
from .random_search import RandomSearch
from .sb3 import PPOPromptAgent

__all__ = ["CMAAgent", "CRLAgent", "CRLConfig", "ESAgent", "PPOPromptAgent", "RandomSearch", "SearchResult"]
