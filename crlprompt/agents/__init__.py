"""Agents: the hybrid CRL agent (Algorithm 1) and env-only RL agents."""

from .crl import CRLAgent, CRLConfig

__all__ = ["CRLAgent", "CRLConfig"]
