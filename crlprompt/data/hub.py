"""The tasks from the Hugging Face hub through ``datasets`` (an optional dependency; needs network)."""

from __future__ import annotations

import importlib.util
from typing import Sequence

from ..errors import DataError
from .files import parse_label
from .splits import Split, data_error

__all__ = ["HUB_DATASETS", "load_hf"]

# task name -> (hub id, text column, label column, test split)
HUB_DATASETS = {"trec": ("CogComp/trec", "text", "coarse_label", "test"),
                "agnews": ("fancyzhx/ag_news", "text", "label", "test"),
                "sst2": ("stanfordnlp/sst2", "sentence", "label", "validation"),
                "empathetic_dialogues": ("facebook/empathetic_dialogues", "prompt", "context", "test")}


def load_hf(name: str, label_names: Sequence[str]) -> tuple[Split, Split]:
    """(train, test) of task ``name`` (a key of ``HUB_DATASETS``) with labels parsed against
    ``label_names``; EmpatheticDialogues keeps one row per conversation."""
    hub_id, t_col, l_col, test_split = HUB_DATASETS[name]
    if importlib.util.find_spec("datasets") is None:
        raise data_error(f"task {name}", "no offline source and `datasets` is not installed",
                         "pass --data-dir with the task files, or pip install datasets and use network")
    import datasets  # optional dependency, imported only here

    try:
        ds = datasets.load_dataset(hub_id)
        out = []
        for split in ("train", test_split):
            texts, labels = list(ds[split][t_col]), list(ds[split][l_col])
            if name == "empathetic_dialogues":  # one row per conversation
                conv, keep, seen = list(ds[split]["conv_id"]), [], set()
                for i, c in enumerate(conv):
                    if c not in seen:
                        seen.add(c)
                        keep.append(i)
                texts = [texts[i].replace("_comma_", ",") for i in keep]
                labels = [labels[i] for i in keep]
            where = f"hf:{hub_id}[{split}]"
            out.append(Split([t.strip() for t in texts],
                             [parse_label(y, label_names, where) for y in labels]))
    except DataError:
        raise
    except Exception as e:
        raise data_error(f"hf:{hub_id}", f"could not load from the hub ({type(e).__name__}: {e})",
                         "check network access, or pass --data-dir with the task files") from e
    return out[0], out[1]
