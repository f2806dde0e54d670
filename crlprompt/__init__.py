"""crl-prompt: soft-prompt tuning of frozen language models as a reinforcement-learning problem."""

__version__ = "0.1.0"
