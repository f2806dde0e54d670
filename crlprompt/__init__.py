"""crl-prompt: soft-prompt tuning of frozen language models as a reinforcement-learning problem.

Importing this package registers the ``CRLPrompt/...`` Gymnasium ids (see
:mod:`crlprompt.registry`); it imports neither torch nor transformers. The heavy modules load
lazily: ``crlprompt.envs``, ``crlprompt.agents``, ``crlprompt.losses``, ``crlprompt.prompts``.
"""

from .registry import env_ids, register_envs

__version__ = "0.1.0"
__all__ = ["__version__", "env_ids", "register_envs"]

register_envs()
