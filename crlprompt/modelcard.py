"""The model card (``README.md``) of an exported adapter, in place of PEFT's empty template.

Its front matter is what the Hugging Face hub reads (``base_model``, ``library_name``, tags) plus
a ``crl_prompt`` record that :func:`crlprompt.prompt_io.read_card_record` reads back (task,
labels, model, prompt kind and tokens, head, pooling, setup, metrics); the text says the same for
a reader and shows how to use the adapter with PEFT alone.
"""

from __future__ import annotations

BUILT_IN_CODE = ("tiny-bert", "tiny-llama")

_KIND = {"deep": "deep prefix (P-Tuning v2: keys and values in every layer)",
         "shallow": "shallow prompt (prompt tuning: input embeddings before the text)"}  # fmt: skip
POOLING_TEXT = {
    "cls": "the first text token ([CLS]) of the last hidden layer; a shallow prompt's virtual tokens come before it",
    "mask": "the [MASK] token of the task template (the verbalizer scores the label words there)",
    "last": "the last non-pad token of the last hidden layer (after the final norm; right padding)",
}


def model_card(rec: dict, peft_type: str) -> str:
    """The card for the adapter record ``rec`` (see :func:`crlprompt.prompt_io.adapter_record`)."""
    import yaml

    base, model, p = rec["base_model"], rec["model"], rec["num_tokens"]
    front = {"library_name": "peft", "pipeline_tag": "text-classification",
             "tags": ["crl-prompt", "soft-prompt", "prefix-tuning" if rec["prompt"] == "deep" else "prompt-tuning"]}  # fmt: skip
    if model not in BUILT_IN_CODE:
        front = {"base_model": base, **front}
        front["tags"].append(f"base_model:adapter:{base}")
    front["crl_prompt"] = rec
    labels = rec.get("labels")
    metrics = rec.get("metrics") or {}
    acc = ", ".join(f"{name} {metrics[key]:.4f}" for key, name in (("test_acc", "test"), ("rl_acc", "D_RL (validation)"))
                    if isinstance(metrics.get(key), (int, float)))  # fmt: skip
    if rec["head"] == "linear":
        c = len(labels) if labels else "C"
        head = f"linear, `head.safetensors`: `linear.weight` ({c}, {rec['hidden_size']}) and `linear.bias` ({c},)"
    else:
        head = "verbalizer: the frozen LM head's logits over one label word per class (no trained head)"
    rows = [
        ("Task", f"`{rec.get('task')}`" + (f", {len(labels)} labels" if labels else "")),
        ("Labels", ", ".join(f"{i} `{name}`" for i, name in enumerate(labels)) if labels else "not recorded"),
        ("Base model", f"`{base}` ({rec['arch']})" + (" built in code by `crlprompt.models.load_model`, random "
                                                       "weights, not on the Hub" if model in BUILT_IN_CODE else "")),
        ("Prompt", f"{_KIND[rec['prompt']]}, {p} virtual tokens; PEFT `{peft_type}`"),
        ("Head", head),
        ("Pooling", POOLING_TEXT[rec["pooling"]]),
        ("Accuracy", acc or "not recorded"),
    ]
    if metrics.get("method"):
        rows.append(("Method", f"`{metrics['method']}`"))
    lines = ["---", yaml.safe_dump(front, sort_keys=False, allow_unicode=True).rstrip(), "---", "",
             f"# Soft prompt for `{rec.get('task')}` on `{base}`", "",
             f"A {_KIND[rec['prompt']].split(' (')[0]} for the frozen `{base}`, trained with crl-prompt: a standard "
             "PEFT adapter with its classifier head beside it.", "",
             "| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows), "",
             "## With crl-prompt", "", "```bash", "crl-prompt eval --checkpoint ADAPTER_DIR", "```", "",
             "```python", "from crlprompt import PromptClassifier", "",
             'clf = PromptClassifier.load("ADAPTER_DIR")', 'clf.predict(["some text"])', "```", "",
             "## With PEFT alone", "", "```python", *_peft_snippet(rec), "```", ""]  # fmt: skip
    return "\n".join(lines)


def _peft_snippet(rec: dict) -> list[str]:
    base, decoder = rec["base_model"], rec["arch"] == "decoder"
    auto = "AutoModelForCausalLM" if decoder else "AutoModel"
    offset = f" + {rec['num_tokens']}" if rec["prompt"] == "shallow" else ""
    if rec["model"] in BUILT_IN_CODE:
        load = [f'lm = load_model("{rec["model"]}")  # from crlprompt.models: built in code',
                f"tok, base = lm.tokenizer, {'lm.full' if decoder else 'lm.body'}"]  # fmt: skip
    else:
        load = [f'tok = AutoTokenizer.from_pretrained("{base}")', f'base = {auto}.from_pretrained("{base}")']
    out = ["import torch", "from peft import PeftModel", "from safetensors.torch import load_file",
           f"from transformers import {auto}, AutoTokenizer", "", *load,
           'model = PeftModel.from_pretrained(base, "ADAPTER_DIR").eval()']  # fmt: skip
    if decoder:
        out += ['tok.padding_side = "right"', 'batch = tok(["some text"], return_tensors="pt", padding=True)',
                "with torch.no_grad():", "    hidden = model(**batch, output_hidden_states=True).hidden_states[-1]",
                f'last = batch["attention_mask"].sum(1) - 1{offset}  # pooling: the last non-pad token',
                "h = hidden[torch.arange(len(last)), last]"]  # fmt: skip
    else:
        out += ['batch = tok(["some text"], return_tensors="pt", padding=True)',
                "with torch.no_grad():", "    hidden = model(**batch).last_hidden_state",
                f"h = hidden[:, 0{offset}]  # pooling: [CLS]"]  # fmt: skip
    if rec["head"] == "linear":
        out += ['head = load_file("ADAPTER_DIR/head.safetensors")',
                'logits = h @ head["linear.weight"].T + head["linear.bias"]  # (B, C)']  # fmt: skip
    return out
