"""One registry of the env-based search agents: name -> agent class, fixed options, factory.

``crl-prompt compare --algos`` accepts its names, ``crl-prompt compare --help`` lists them and
``python -m crlprompt.runners.compare --algorithms`` prints the README's algorithm table from it.
A new agent is one class (an :class:`~crlprompt.agents.base.AskTellAgent` or
:class:`~crlprompt.agents.base.SearchAgent`) and one line::

    register_agent("my-search", MySearch, follows="...", differs="...")

A factory is ``make(env_id, env_kwargs, seed, *, num_envs, **agent_kwargs) -> (agent, env)``:
it builds the env the agent needs (by default the batched vector env with K = ``num_envs``
prompts per forward) and the agent on it. ``env_kwargs`` may hold ``setup`` (a built
:class:`~crlprompt.build.Setup`) so that every run shares one model. ``projection_dim`` overrides
the env's action dimension for any agent.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError

Factory = Callable[..., tuple[Any, Any]]


def _vector_env(env_id: str, env_kwargs: dict, num_envs: int, projection_dim: int | None = None):
    """The batched vector env of ``num_envs`` sub-envs (one forward scores all K actions)."""
    import gymnasium as gym

    kw = env_kwargs if projection_dim is None else {**env_kwargs, "projection_dim": projection_dim}
    return gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point", **kw)


def _resolve(agent: type | str | Callable) -> type | Callable:
    """A class (or factory), or ``"module:Class"`` imported now (the built-in agents load on first use)."""
    if isinstance(agent, str):
        module, name = agent.split(":")
        return getattr(importlib.import_module(module), name)
    return agent


def vector_factory(agent: type | str, *, num_envs: int | None = None, **fixed: Any) -> Factory:
    """The factory of an agent whose first argument is a vector env: K = ``num_envs`` if given
    (racing and ARS use 1), else the runner's; ``fixed`` keyword arguments go to every agent."""
    own_k = num_envs

    def make(env_id: str, env_kwargs: dict, seed: int, *, num_envs: int, projection_dim: int | None = None, **kw):
        env = _vector_env(env_id, env_kwargs, own_k or num_envs, projection_dim)
        try:
            return _resolve(agent)(env, seed=seed, **fixed, **kw), env
        except BaseException:
            env.close()
            raise

    return make


def text_factory(agent: type | str, **fixed: Any) -> Factory:
    """The factory of a text-prompt agent: the text env of a ``CRLPrompt/*-Text-v0`` id (one prompt per
    step; ``num_envs`` does not apply) and the agent on it, given ``fixed`` arguments."""

    def make(env_id: str, env_kwargs: dict, seed: int, *, num_envs: int, **kw):
        import gymnasium as gym

        from .text import text_env_of

        env = gym.make(env_id, **env_kwargs)
        try:
            text_env_of(env)  # a soft id is refused here, naming the text ids
            return _resolve(agent)(env, seed=seed, **fixed, **kw), env
        except BaseException:
            env.close()
            raise

    return make


def _cma(env_id: str, env_kwargs: dict, seed: int, *, num_envs: int, popsize: int | None = None,
         projection_dim: int | None = None, **kw):  # fmt: skip
    """CMA-ES; one generation (``popsize``, default ``num_envs``) per batched forward."""
    from .cma import CMAAgent, check_popsize

    popsize = None if popsize is None else check_popsize(popsize)  # before its vector env is built
    env = _vector_env(env_id, env_kwargs, popsize or num_envs, projection_dim)
    return CMAAgent(env, seed=seed, popsize=popsize, **kw), env


def _cma_diag(env_id: str, env_kwargs: dict, seed: int, *, num_envs: int, **kw):
    """Separable CMA-ES on the full prompt (no projection: d = D; a bbt env scales each coordinate)."""
    return _cma(env_id, {**env_kwargs, "projection_dim": None}, seed, num_envs=num_envs, diagonal=True, **kw)


def _ppo(env_id: str, env_kwargs: dict, seed: int, *, num_envs: int, projection_dim: int | None = None, **kw):
    """SB3 PPO on a single env; an action wider than 1024 gets a 64-dimensional projection."""
    import logging

    import gymnasium as gym

    from .sb3 import MAX_PPO_ACTION_DIM, PPOPromptAgent

    env = gym.make(env_id, **({**env_kwargs, "projection_dim": projection_dim} if projection_dim else env_kwargs))
    if projection_dim is None and env.action_space.shape[0] > MAX_PPO_ACTION_DIM:
        logging.getLogger(__name__).info(
            "PPO gets a 64-dimensional projected action (the env's has %d dimensions)", env.action_space.shape[0]
        )
        env.close()
        env = gym.make(env_id, **{**env_kwargs, "projection_dim": 64})
    return PPOPromptAgent(env, seed=seed, **kw), env


@dataclass(frozen=True)
class AgentSpec:
    """One registered algorithm: what ``--algos NAME`` builds, and its row of the algorithm table."""

    name: str
    """The ``--algos`` name."""
    agent: type | str | Callable
    """The agent class, or ``"module:Class"`` (imported on first use); for a spec registered with a
    factory alone, that factory."""
    make: Factory
    """``make(env_id, env_kwargs, seed, *, num_envs, **agent_kwargs) -> (agent, env)``."""
    follows: str = ""
    """The method it follows (paper, library), for the table."""
    differs: str = ""
    """What differs from it here, for the table."""
    needs: str | None = None
    """The optional module it needs (``cma``, ``stable_baselines3``...), or None."""
    options: dict[str, Any] = field(default_factory=dict)
    """Fixed agent arguments the factory passes (``algo="td3"``, ``diagonal=True``): not settable per run."""
    space: str = "soft"
    """The prompts it searches: ``"soft"`` (the soft-prompt ids) or ``"text"`` (the ``*-Text-v0`` ids)."""

    @property
    def agent_name(self) -> str:
        return self.agent.rsplit(":", 1)[1] if isinstance(self.agent, str) else self.agent.__name__

    @property
    def agent_class(self) -> type | Callable:
        return _resolve(self.agent)

    def arguments(self) -> set[str] | None:
        """The agent arguments a run may set (``--algo-kwargs``), or None when any is passed on."""
        named = {inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD}
        out: set[str] = set()
        for fn in (self.make, self.agent_class):  # the factory's own, then what it passes to the agent
            params = inspect.signature(fn).parameters.values()
            out |= {p.name for p in params if p.kind in named}
            if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
                break  # nothing is passed further
            if fn is not self.make or not inspect.isclass(self.agent_class):
                return None  # the rest goes on unchecked (SB3's own arguments, a factory's **kw)
        return out - {"self", "env", "seed", "env_id", "env_kwargs", "num_envs", *self.options}

    def check_kwargs(self, kwargs: dict) -> None:
        """Raise :class:`ConfigError` naming the accepted arguments when ``kwargs`` has others."""
        allowed = self.arguments()
        unknown = [] if allowed is None else sorted(set(kwargs) - allowed)
        if unknown:
            raise ConfigError(f"{self.name} ({self.agent_name}) takes no argument(s) {unknown}; "
                              f"it takes {sorted(allowed)}")  # fmt: skip

    def build(self, env_id: str, env_kwargs: dict, seed: int, *, num_envs: int, **kwargs: Any) -> tuple[Any, Any]:
        """Check ``kwargs`` and build ``(agent, env)``."""
        self.check_kwargs(kwargs)
        return self.make(env_id, env_kwargs, seed, num_envs=num_envs, **kwargs)


REGISTRY: dict[str, AgentSpec] = {}
"""name -> :class:`AgentSpec`, in the order of the table (built-in agents first)."""


def register_agent(
    name: str,
    agent: type | str | Factory,
    *,
    make: Factory | None = None,
    num_envs: int | None = None,
    follows: str = "",
    differs: str = "",
    needs: str | None = None,
    replace: bool = False,
    space: str = "soft",
    **options: Any,
) -> AgentSpec:
    """Add ``name`` to the registry and return its spec.

    ``agent`` is the agent class (its first argument the env, ``seed=`` a keyword; or
    ``"module:Class"``). ``make`` is its factory, by default :func:`vector_factory`: the batched
    vector env with K = ``num_envs`` (default: the runner's ``--num-envs``) and the agent on it,
    given ``options`` (fixed arguments, e.g. ``algo="td3"``) and the run's ``--algo-kwargs``; with
    ``make=``, ``options`` names what that factory fixes. A plain function as ``agent`` is taken as
    the factory itself. Fixed arguments are refused in ``--algo-kwargs``. ``needs`` names an optional
    module it imports (for the lists of what runs where). ``replace=True`` overwrites a name. ``space``:
    ``"soft"`` or ``"text"`` (a text agent's factory is :func:`text_factory`).
    """
    if not (isinstance(name, str) and name and not set(name) & set(", \t\n{}\"'")):
        raise ConfigError(f"an agent name must be a non-empty string without commas, spaces or quotes, got {name!r}")
    if name in REGISTRY and not replace:
        raise ConfigError(f"agent {name!r} is already registered ({REGISTRY[name].agent_name}); pass replace=True")
    if inspect.isfunction(agent) and make is None:
        make = agent  # a factory alone
    elif make is None:
        make = vector_factory(agent, num_envs=num_envs, **options)
    elif num_envs is not None:
        raise ConfigError("num_envs goes to the default factory; with make=, the factory chooses the env")
    if space not in ("soft", "text"):
        raise ConfigError(f"space must be 'soft' or 'text', got {space!r}")
    spec = AgentSpec(name, agent, make, follows, differs, needs, options, space)
    REGISTRY[name] = spec
    return spec


def get_spec(name: str) -> AgentSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown algorithm {name!r}; choose from {', '.join(REGISTRY)}") from None


def names(space: str | None = "soft") -> list[str]:
    """The registered names of one prompt space: ``"soft"`` (the soft-prompt ids' agents, the default),
    ``"text"`` (the ``*-Text-v0`` ids'), or None for every one (what ``--algos`` accepts)."""
    return [n for n, s in REGISTRY.items() if space is None or s.space == space]


def help_text() -> str:
    """One line per algorithm, for ``crl-prompt compare --help``."""
    width = max(map(len, REGISTRY))

    def agent(s: AgentSpec) -> str:
        return s.agent_name + (f"({', '.join(f'{k}={v!r}' for k, v in s.options.items())})" if s.options else "")

    return "\n".join(f"  {n:{width}s}  {agent(s)}: {s.follows or s.differs}" for n, s in REGISTRY.items())


def markdown_table(extra_rows: list[tuple[str, str, str, str]] = ()) -> str:
    """The README's algorithm table: ``--algos`` name | agent | follows | what differs. Consecutive
    names with the same agent, follows and differs share a row; ``extra_rows`` come first."""
    rows: list[list] = []
    for name, spec in REGISTRY.items():
        key = (spec.agent_name, spec.follows, spec.differs)
        if rows and rows[-1][1] == key:
            rows[-1][0].append(name)
        else:
            rows.append([[name], key])
    lines = ["| `--algos` name | agent | follows | what differs |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in extra_rows]
    for group, (agent, follows, differs) in rows:
        lines.append(f"| {', '.join(f'`{n}`' for n in group)} | `{agent}` | {follows or '—'} | {differs or '—'} |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- the built-in agents
_SB3 = ("SB3 / sb3-contrib", "a VecEnv whose `step_wait` is one batched forward; settings for one-step episodes in "
        "its docstring")  # fmt: skip
_CMA = ("CMA-ES (pycma), BBT's optimizer", "full CMA on projected actions, separable CMA on the full prompt")
register_agent("random", "crlprompt.agents.random_search:RandomSearch",
               differs="Gaussian samples around the center, best kept")
register_agent("es", "crlprompt.agents.es:ESAgent", follows="OpenAI-ES (Salimans et al. 2017)",
               differs="antithetic pairs, centered ranks, Adam; optional StablePrompt anchor")
register_agent("cma", "crlprompt.agents.cma:CMAAgent", make=_cma, follows=_CMA[0], differs=_CMA[1], needs="cma")
register_agent("cma-diag", "crlprompt.agents.cma:CMAAgent", make=_cma_diag, follows=_CMA[0], differs=_CMA[1],
               needs="cma", diagonal=True)
register_agent("ppo", "crlprompt.agents.sb3:PPOPromptAgent", make=_ppo, follows="SB3 PPO",
               differs="unchanged PPO in the Box; optional anchor", needs="stable_baselines3")
register_agent("offpolicy", "crlprompt.agents.offpolicy:OffPolicyPGAgent",
               follows="the paper's \"future work\": off-policy REINFORCE",
               differs="replay of past (prompt, reward) pairs, self-normalised truncated mixture importance weights")
register_agent("gp", "crlprompt.agents.bandit:GPBanditAgent",
               follows="BoTorch SingleTaskGP + qLogEI, TuRBO trust region", differs="q = K points per round, d ≤ 200",
               needs="botorch")
register_agent("racing", "crlprompt.agents.racing:RacingSearch", num_envs=1,  # the env only lends its search
               follows="successive halving / racing",
               differs="scores candidates on growing subsets of D_RL, drops those that cannot win")
register_agent("anchor", "crlprompt.agents.anchor:AnchoredPolicyAgent",
               follows="StablePrompt's APPO (Kwon et al. 2024)",
               differs="Gaussian policy with a KL trust region to an anchor that moves only on improvement")
for _algo in ("sac", "td3", "crossq", "ars"):  # ARS scores one policy per step: K = 1
    register_agent(_algo, "crlprompt.agents.sb3_offpolicy:SB3OffPolicyAgent", num_envs=1 if _algo == "ars" else None,
                   follows=_SB3[0], differs=_SB3[1], needs="sb3_contrib" if _algo in ("crossq", "ars") else
                   "stable_baselines3", algo=_algo)  # fmt: skip
_TEXT = "budget in target-model evaluations; agent LM: any causal LM (default SmolLM2-135M-Instruct)"
_HC = "crlprompt.agents.text:HandCraftAgent"
register_agent("handcraft", _HC, make=text_factory(_HC), space="text", follows="HandCraft (the paper's template and label words, zero-shot)",
               differs="the text ids' no-instruction row (one evaluation)")  # fmt: skip
register_agent("ape", "crlprompt.agents.ape:APEAgent", make=text_factory("crlprompt.agents.ape:APEAgent"), space="text",
               follows="APE (Zhou et al. 2023), iterative", differs=f"instructions induced from train pairs, the best "
               f"few resampled as variations; {_TEXT}")  # fmt: skip
register_agent("lcp", "crlprompt.agents.lcp:LCPAgent", make=text_factory("crlprompt.agents.lcp:LCPAgent"), space="text",
               follows="LCP, learning from contrastive prompts (2024)", differs=f"each round shows the agent LM the "
               f"best and worst instructions with their env rewards; {_TEXT}")  # fmt: skip
_SP = "crlprompt.agents.stableprompt:StablePromptAgent"
register_agent("stableprompt", _SP, make=text_factory(_SP), space="text", needs="peft",
               follows="StablePrompt (Kwon et al. 2024): APPO", differs="LoRA on the agent LM (PEFT), B instructions "
               "per update from a task-agnostic meta-prompt; PPO with a KL toward an anchor that moves to the policy "
               f"when the batch reward improves; {_TEXT}")  # fmt: skip
register_agent("stableprompt-ppo", _SP, make=text_factory(_SP, anchor="previous"), space="text", needs="peft",
               follows="StablePrompt's ablation: plain PPO", differs="the KL's reference is the policy before each "
               "update", anchor="previous")  # fmt: skip
_RLP = "crlprompt.agents.rlprompt:RLPromptAgent"
register_agent("rlprompt", _RLP, make=text_factory(_RLP), space="text", follows="RLPrompt (Deng et al. 2022), its action "
               "space", differs="a softmax table per position over the token twin's words instead of a policy LM; "
               "REINFORCE on z-scored batch rewards")  # fmt: skip
