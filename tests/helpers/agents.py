"""Assertions shared by the agent tests: the env's reward of one prompt, and two runs being identical."""

from __future__ import annotations

import numpy as np
import torch

from crlprompt.agents import SearchResult
from crlprompt.build import Setup
from crlprompt.scoring import score_population


def margin_of(setup: Setup, prompt: np.ndarray) -> float:
    """The tiny envs' reward (mean logit margin on all of D_RL) of one prompt ``(D,)``."""
    return float(score_population(setup.model, setup.drl, torch.as_tensor(prompt)[None]).reward("margin")[0])


def assert_same(a: SearchResult, b: SearchResult) -> None:
    """Two search runs are the same trajectory: prompts bit-identical, rewards, history and evaluations equal."""
    np.testing.assert_array_equal(a.best_prompt, b.best_prompt)
    np.testing.assert_array_equal(a.final_prompt, b.final_prompt)
    assert (a.best_reward, a.final_reward, a.history, a.evals) == (b.best_reward, b.final_reward, b.history, b.evals)
