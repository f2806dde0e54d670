"""crl-prompt: soft-prompt tuning of frozen language models as a reinforcement-learning problem.

Importing this package registers the ``CRLPrompt/...`` Gymnasium ids (see
:mod:`crlprompt.registry`) and imports neither torch nor transformers. The public objects below
load lazily, on first attribute access (``crlprompt.CRLAgent`` imports torch then)::

    from crlprompt import SetupConfig, build, CRLAgent, CRLConfig
    setup = build(SetupConfig(task="tiny", model="tiny-llama", num_tokens=4))
    CRLAgent(setup, CRLConfig(phase1_epochs=1, phase2_epochs=1)).learn()
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import CheckpointError, ConfigError, CRLPromptError, DataError, EnvError, ModelError
from .registry import env_ids, register_envs
from .lazy import lazy_exports

__version__ = "0.1.0"

#: public name -> the module that defines it (imported on first access)
_LAZY = {
    "SetupConfig": "build", "Setup": "build", "build": "build",
    "load_task": "tasks", "TaskSpec": "tasks", "TASKS": "tasks",
    "load_model": "models", "LoadedModel": "models",
    "SoftPrompt": "prompts", "PromptedModel": "prompts", "save_prompt": "prompts", "load_prompt": "prompts",
    "save_peft_adapter": "prompts",
    "accuracy": "scoring", "score_population": "scoring",
    "EnvConfig": "envs", "SoftPromptEnv": "envs", "SoftPromptVectorEnv": "envs", "PromptSearch": "envs",
    "CRLAgent": "agents", "CRLConfig": "agents", "ESAgent": "agents", "RandomSearch": "agents",
    "PPOPromptAgent": "agents", "SearchResult": "agents", "SearchAgent": "agents", "AskTellAgent": "agents",
    "SearchEvent": "agents", "register_agent": "agents",
    "PromptClassifier": "api", "TaskData": "tasks", "Split": "tasks",
}  # fmt: skip

__all__ = [
    "__version__", "env_ids", "register_envs",
    "CRLPromptError", "ConfigError", "DataError", "ModelError", "CheckpointError", "EnvError",
    *_LAZY,
]  # fmt: skip


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from .agents import (  # noqa: F401
        AskTellAgent,
        CRLAgent,
        CRLConfig,
        ESAgent,
        PPOPromptAgent,
        RandomSearch,
        SearchAgent,
        SearchEvent,
        SearchResult,
        register_agent,
    )
    from .api import PromptClassifier  # noqa: F401
    from .build import Setup, SetupConfig, build  # noqa: F401
    from .envs import EnvConfig, PromptSearch, SoftPromptEnv, SoftPromptVectorEnv  # noqa: F401
    from .models import LoadedModel, load_model  # noqa: F401
    from .prompts import PromptedModel, SoftPrompt, load_prompt, save_peft_adapter, save_prompt  # noqa: F401
    from .scoring import accuracy, score_population  # noqa: F401
    from .tasks import TASKS, Split, TaskData, TaskSpec, load_task  # noqa: F401

register_envs()
