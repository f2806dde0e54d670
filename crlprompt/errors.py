"""The errors crl-prompt raises on bad input, after ``gymnasium/error.py``: one base class.

Every error a user can cause and fix (a bad name, value, file or checkpoint) derives from
:class:`CRLPromptError`, which is a :class:`ValueError` so that ``except ValueError`` keeps
working. The CLI turns exactly these into one line on stderr and exit code 2; anything else is
a bug and keeps its traceback.
"""

from __future__ import annotations


class CRLPromptError(ValueError):
    """Base class of every user-fixable error in crl-prompt."""


class ConfigError(CRLPromptError):
    """A configuration value is out of range, of the wrong type or inconsistent with another."""


class DataError(CRLPromptError):
    """A task's data is missing, malformed or unsafe (it names the file and the fix)."""


class ModelError(CRLPromptError):
    """A model name, directory or offline package cannot be resolved, or lacks a needed part."""


class CheckpointError(CRLPromptError):
    """A saved prompt or training state is missing, torn, corrupted or made for another setup."""


class EnvError(CRLPromptError):
    """An action, center or prompt the environment cannot evaluate (the env stays usable)."""


__all__ = ["CRLPromptError", "CheckpointError", "ConfigError", "DataError", "EnvError", "ModelError"]
