"""Run under torchrun: score 4 prompts on the tiny task's D_RL with sharded evaluation and write
the all-reduced rewards (rank 0) to the JSON file named by argv[1]."""

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for helpers.tiny

from crlprompt.distributed import init_from_env, is_main, world_size
from helpers.tiny import tiny_setup
from crlprompt.scoring import score_population

init_from_env()
setup = tiny_setup()
theta = setup.model.prompt.theta.detach()
thetas = theta + 0.3 * torch.randn(4, theta.numel(), generator=torch.Generator().manual_seed(0))
scores = score_population(setup.model, setup.drl, thetas, max_rows=32)
if is_main():
    with open(sys.argv[1], "w") as f:
        json.dump({"world": world_size(), "count": scores.count, "accuracy": scores.reward("accuracy").tolist(),
                   "margin": scores.reward("margin").tolist()}, f)
