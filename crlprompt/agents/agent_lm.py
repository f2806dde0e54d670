"""The agent LM of the text-prompt agents (APE, LCP, StablePrompt): a causal LM that writes instructions.

Any causal LM :func:`crlprompt.models.load_model` knows (``smollm2``, the offline default; an HF id
or a local directory; ``tiny-llama`` for tests). The meta-prompts show input/output pairs of the
task (train rows and their label words) and ask for one instruction; an instruct model gets them
through its chat template. Sampling is seeded and draws from a forked torch random state, so it
leaves the global one alone.
"""

from __future__ import annotations

import functools
import re
from abc import abstractmethod
from collections.abc import Sequence

import numpy as np
import torch

from ..build import Setup
from ..envs.text import clean_prompt
from ..errors import ConfigError
from ..models import LoadedModel, load_model
from .text import TextSearchAgent

DEFAULT_AGENT = "smollm2"

#: APE's instruction induction (Zhou et al. 2023, forward mode), as one user turn.
INDUCE = ("I gave a friend an instruction and {k} inputs. The friend read the instruction and wrote an output for "
          "every one of the inputs. Here are the input-output pairs:\n\n{demos}\n\nWhat was the instruction? Reply "
          "with the instruction only, in one sentence.")  # fmt: skip
#: APE's resampling template (a variation around a good instruction).
VARIATION = ("Generate a variation of the following instruction while keeping the semantic meaning.\n\n"
             "Input: {instruction}\n\nReply with the new instruction only.")  # fmt: skip
#: LCP's contrastive view: good and bad instructions with their scores, and the task's pairs.
CONTRAST = ("Here are input-output pairs of a task:\n\n{demos}\n\nThese instructions were tried on the task, with "
            "their scores (higher is better).\nGood instructions:\n{good}\nBad instructions:\n{bad}\n\nCompare the "
            "good instructions with the bad ones and find what makes the good ones work. Then write one new "
            "instruction that should score higher than all of them. Reply with the instruction only.")  # fmt: skip


@functools.lru_cache(maxsize=2)
def _load(name: str) -> LoadedModel:
    return load_model(name)


def agent_model(name: str, target: LoadedModel | None = None, *, private: bool = False) -> LoadedModel:
    """The agent LM ``name``: the target's own model when it is the same one (both only generate or
    score, nothing trains them), else loaded once per process; ``private=True`` loads a fresh copy
    (an agent that trains an adapter on it)."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"agent_model must be a model name, got {name!r}")
    if target is not None and target.name == name and not private:
        lm = target
    else:
        lm = load_model(name) if private else _load(name)
    if lm.arch != "decoder" or lm.full is None:
        raise ConfigError(f"the agent LM must be a causal LM that generates text, got {name!r} ({lm.arch}); "
                          "pass agent_model='smollm2' or another decoder")  # fmt: skip
    return lm


def demonstrations(setup: Setup, k: int, rng: np.random.Generator) -> list[tuple[str, str]]:
    """``k`` train rows as (input, label word) pairs, drawn with ``rng`` (classes interleaved)."""
    if setup.rows is None:
        raise ConfigError("the agent's demonstrations need the setup's rows (a Setup made by build())")
    rows, words = setup.rows.train, setup.spec.verbalizer
    labels = np.asarray(rows.labels)
    by_class = [rng.permutation(np.flatnonzero(labels == c)).tolist() for c in range(setup.spec.num_labels)]
    order = [i for group in zip(*[g for g in by_class if g]) for i in group] if any(by_class) else []
    rest = [i for g in by_class for i in g if i not in set(order)]
    chosen = (order + rest)[:k]
    return [(" ".join(rows.texts[i].split()), words[int(labels[i])]) for i in chosen]


def format_demos(demos: Sequence[tuple[str, str]]) -> str:
    return "\n\n".join(f"Input: {x}\nOutput: {y}" for x, y in demos)


def as_chat(lm: LoadedModel, text: str) -> str:
    """``text`` as one user turn of the model's chat template (as is for a model without one)."""
    tok = lm.tokenizer
    if getattr(tok, "chat_template", None):
        return tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True)
    return text + "\n"


@torch.no_grad()
def generate_ids(model, tok, prompt_ids: torch.Tensor, n: int, *, seed: int, max_new_tokens: int = 48,
                 temperature: float = 1.0, top_p: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """``n`` sampled continuations of ``prompt_ids (1, P)``: ``(prompt (1, P'), generated (n, G))`` token
    ids, the prompt cut to its last positions where it would not leave ``max_new_tokens`` of the model's
    positions; the random state is forked and seeded with ``seed``."""
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit and prompt_ids.shape[1] + max_new_tokens > limit:  # a small model: keep the meta-prompt's end
        prompt_ids = prompt_ids[:, -max(limit - max_new_tokens, 1) :]
    device = prompt_ids.device
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        out = model.generate(input_ids=prompt_ids, attention_mask=torch.ones_like(prompt_ids), do_sample=True,
                             temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, num_return_sequences=n,
                             pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)  # fmt: skip
    return prompt_ids, out[:, prompt_ids.shape[1] :]


def sample(lm: LoadedModel, text: str, n: int, *, seed: int, max_new_tokens: int = 48, temperature: float = 1.0,
           top_p: float = 0.95) -> list[str]:  # fmt: skip
    """``n`` samples of the agent LM continuing ``text`` (already in chat form), decoded."""
    device = next(lm.full.parameters()).device
    ids = lm.tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"].to(device)
    _, gen = generate_ids(lm.full, lm.tokenizer, ids, n, seed=seed, max_new_tokens=max_new_tokens,
                          temperature=temperature, top_p=top_p)  # fmt: skip
    return [lm.tokenizer.decode(row, skip_special_tokens=True) for row in gen]


_LEAD = re.compile(r"^\s*(?:new\s+)?(?:instruction|output|answer)\s*[:\-]\s*", re.IGNORECASE)


def instruction_of(generated: str, max_chars: int) -> str:
    """The instruction in an agent LM's reply: its first non-empty line, without a leading
    "Instruction:" and quotes, on the env's charset, cut at a word boundary to ``max_chars``
    (``""`` when nothing is left)."""
    line = next((s for s in generated.splitlines() if s.strip()), "")
    line = _LEAD.sub("", line).strip().strip("\"'` ").strip()
    text = clean_prompt(line, max_chars=10 * max_chars)
    if len(text) > max_chars:
        text = text[:max_chars].rsplit(" ", 1)[0]
    return text.strip()


class AgentLMSearch(TextSearchAgent):
    """A text search whose candidates an agent LM writes (APE, LCP): the first round induces
    instructions from ``num_demos`` input/output pairs of the train rows (after ``init_prompts``,
    e.g. the prompts found for another target); :meth:`propose_next` writes the later rounds.

    Args:
        env: a text env (``gym.make("CRLPrompt/...-Text-v0")``).
        agent_model: the agent LM (:func:`agent_model`; the target's model is shared when it is the same).
        num_demos: input/output pairs in the meta-prompt.
        candidates: instructions sampled in the first round.
        temperature, top_p, max_new_tokens: the agent LM's sampling.
        init_prompts: instructions scored first (the adaptation use: start from another target's prompts).
        seed: seeds the demonstrations and the agent LM's samples.
    """

    def __init__(self, env, *, agent_model: str = DEFAULT_AGENT, num_demos: int = 5, candidates: int = 8,
                 temperature: float = 1.0, top_p: float = 0.95, max_new_tokens: int = 48,
                 init_prompts: Sequence[str] = (), seed: int = 0):  # fmt: skip
        super().__init__(env, seed)
        for name, v in (("num_demos", num_demos), ("candidates", candidates), ("max_new_tokens", max_new_tokens)):
            check_positive(name, v)
        if not (isinstance(temperature, (int, float)) and temperature > 0 and 0 < top_p <= 1):
            raise ConfigError(f"temperature must be > 0 and top_p in (0, 1], got {temperature!r}, {top_p!r}")
        if isinstance(init_prompts, str) or not all(isinstance(p, str) for p in init_prompts):
            raise ConfigError("init_prompts must be a list of instruction strings")
        self.agent_model, self.num_demos, self.candidates = agent_model, num_demos, candidates
        self.temperature, self.top_p, self.max_new_tokens = float(temperature), float(top_p), max_new_tokens
        self.init_prompts = list(init_prompts)
        self.lm: LoadedModel | None = None

    def start(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        self.lm = agent_model(self.agent_model, self.scorer.search.setup.lm)
        self._calls = 0

    def demos(self) -> str:
        """A fresh draw of ``num_demos`` input/output pairs, formatted for a meta-prompt."""
        return format_demos(demonstrations(self.scorer.search.setup, self.num_demos, self.rng))

    def write(self, meta_prompt: str, n: int) -> list[str]:
        """``n`` instructions the agent LM writes for ``meta_prompt`` (a user turn)."""
        self._calls += 1
        outs = sample(self.lm, as_chat(self.lm, meta_prompt), n, seed=self.seed * 1_000_003 + self._calls,
                      max_new_tokens=self.max_new_tokens, temperature=self.temperature, top_p=self.top_p)  # fmt: skip
        return [instruction_of(o, self.max_chars) for o in outs]

    def propose(self, room: int) -> list[str]:
        if not self.scored:  # the first round (again, if it gave nothing the env could score)
            demos = self.demos()
            first = self.init_prompts if self._calls == 0 else []
            return first + self.write(INDUCE.format(k=self.num_demos, demos=demos), min(self.candidates, room))
        return self.propose_next(room)

    @abstractmethod
    def propose_next(self, room: int) -> list[str]:
        """The candidates of a round after the first."""


def check_positive(name: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ConfigError(f"{name} must be an int >= 1, got {v!r}")
    return int(v)
