"""Action-dimension limits of agents that only work on a projected (low-dimensional) action."""

from __future__ import annotations

from ..errors import ConfigError


def projected_ids() -> list[str]:
    """The registered ids with a projected action (``CRLPrompt/...-Proj<d>-v0``)."""
    from ..registry import env_ids

    return [i for i in env_ids() if "-Proj" in i]


def require_action_dim(dim: int, max_dim: int, agent: str) -> None:
    """Raise :class:`ConfigError` naming the ``-Proj`` ids when ``dim > max_dim``."""
    if dim > max_dim:
        ids = ", ".join(projected_ids()) or "CRLPrompt/...-Proj64-v0"
        raise ConfigError(
            f"{agent} supports an action of at most {max_dim} dimensions; this env's has {dim}. "
            f"Use a projected id ({ids}) or gym.make(..., projection_dim=64)"
        )
