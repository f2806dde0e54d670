"""Tests of :mod:`crlprompt.envs`."""
