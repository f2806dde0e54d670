"""Gymnasium environments: :class:`SoftPromptEnv`, its batched vector form, their config."""

from .config import EnvConfig
from .search import PromptSearch, make_search, plant_head
from .soft_prompt import SoftPromptEnv
from .vector import SoftPromptVectorEnv

__all__ = ["EnvConfig", "PromptSearch", "SoftPromptEnv", "SoftPromptVectorEnv", "make_search", "plant_head"]
