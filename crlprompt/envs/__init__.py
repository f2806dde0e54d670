"""Gymnasium environments: :class:`SoftPromptEnv`, its batched vector form, and the registry."""

from .soft_prompt import PromptSearch, SoftPromptEnv, make_search
from .vector import SoftPromptVectorEnv

__all__ = ["PromptSearch", "SoftPromptEnv", "SoftPromptVectorEnv", "make_search"]
