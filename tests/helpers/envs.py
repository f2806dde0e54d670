"""The registered tiny ids' search setup, built once per (env id, env options), and vector envs on it.

A test module keeps its own env options (``ENV_KW``) and passes them, so what each test builds
is explicit::

    ENV_KW = {"sigma": 1.0, "reward": "margin"}
    make_vec = functools.partial(envs.make_vec, **ENV_KW)  # a call's keywords override ENV_KW

    @pytest.fixture(scope="module")
    def setup():
        return envs.tiny_search_setup(TINY_PROJ, **ENV_KW)
"""

from __future__ import annotations

import functools

import gymnasium as gym

import crlprompt  # noqa: F401  (registers the CRLPrompt/... ids)
from crlprompt.build import Setup

TINY, TINY_PROJ = "CRLPrompt/Tiny-v0", "CRLPrompt/Tiny-Proj64-v0"


def tiny_search_setup(env_id: str = TINY_PROJ, **env_kw) -> Setup:
    """The :class:`Setup` (model + tokenized data) that ``gym.make(env_id, **env_kw)`` builds.

    Built once per ``(env_id, env_kw)`` in a session and then shared (the same object) by every
    module that asks for it: pass it as ``setup=`` to an env to skip rebuilding. The envs and
    agents leave a given setup as they found it; a test that changes it must restore it (or build
    its own, e.g. ``helpers.tiny.tiny_setup()``). Building touches no global RNG.
    """
    return _built(env_id, tuple(sorted(env_kw.items())))


@functools.cache
def _built(env_id: str, env_kw: tuple[tuple[str, object], ...]) -> Setup:
    return gym.make(env_id, **dict(env_kw)).unwrapped.search.setup


def make_vec(setup: Setup, num_envs: int = 16, env_id: str = TINY_PROJ, **env_kw) -> gym.vector.VectorEnv:
    """``num_envs`` envs of ``env_id`` as one batched vector env on the built ``setup``."""
    return gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point", setup=setup, **env_kw)
