"""Command-line runners: one training run, the paper reproduction grid, and RL comparisons."""
