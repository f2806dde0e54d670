"""Tests of :mod:`crlprompt.data` (one module per source, as in the package)."""
