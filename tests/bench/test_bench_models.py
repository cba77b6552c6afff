"""Any model a user names runs: the head from what the task needs and transformers' auto mappings, default targets
for families outside the table. Real random models of two architectures not in the table, saved as a user keeps
a checkpoint (config.json, model.safetensors, a tokenizer); no download."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from bench.config.presets import make_sweep_config
from bench.models import choose_head, get_entry
from bench.results.read import read_rows
from bench.run.sweep import run_sweep
from giva.targets import DEFAULT_TARGETS, default_targets

pytestmark = pytest.mark.usefixtures("single_thread")

# Two layers of hidden 32 with MiniLM's vocabulary, so that its (local) tokenizer serves.
BODIES = {
    "mpnet": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64),
    "distilbert": dict(dim=32, n_layers=2, n_heads=2, hidden_dim=64),
}


def save_checkpoint(folder, model_type: str, tokenizer_dir: str) -> str:
    """A pretrained-style body (AutoModel, no head), as sentence-embedding checkpoints come."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    torch.manual_seed(0)
    AutoModel.from_config(AutoConfig.for_model(model_type, vocab_size=30522, **BODIES[model_type])).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(folder)
    return str(folder)


@pytest.mark.parametrize("model_type", sorted(BODIES))
def test_a_family_outside_the_table_runs_classification_and_profile(model_type, tmp_path, minilm_dir):
    assert model_type not in DEFAULT_TARGETS
    folder = save_checkpoint(tmp_path / model_type, model_type, minilm_dir)
    train = tmp_path / "train.csv"
    train.write_text("text,label\n" + "".join(f"review {i} was {'good' if i % 2 else 'bad'},{'pos' if i % 2 else 'neg'}\n"
                                              for i in range(40)))
    config = make_sweep_config(None, dict(
        models=[folder], tasks=["csv", "profile"], methods=["lora", "giva"], ranks=[2], batch_sizes=[4], seq_lens=[16],
        warmup_steps=1, timed_steps=2, isolate=False, train={"steps": 3}, task_options={"train_file": str(train)}))
    run_sweep(config, str(tmp_path / "run"), ["test"], log=lambda *_: None)
    rows = read_rows(str(tmp_path / "run" / "results.csv"))
    assert len(rows) == 4 and {r["status"] for r in rows} == {"ok"}, [r["error"] for r in rows]
    for row in rows:
        assert int(row["adapted_layers"]) == 2 * 6  # q, k, v, out, and the two feed-forward layers of each block
        assert int(row["trainable_params"]) > int(row["adapter_params"])  # the new classification head trains too
        if row["task"] == "csv":
            assert row["eval_accuracy"] != ""


def test_the_head_follows_the_task_and_transformers_mappings(tmp_path, minilm_dir):
    entry = get_entry(save_checkpoint(tmp_path / "mpnet", "mpnet", minilm_dir))
    assert choose_head(entry, "csv", "seq_cls") == "seq_cls"
    assert choose_head(entry, "profile", None) == "seq_cls"  # an encoder: a type with a masked-LM head
    assert choose_head(get_entry("llama-2m"), "profile", None) == "causal_lm"
    assert choose_head(get_entry("llama-2m"), "sst2", "seq_cls") == "seq_cls"  # decoders classify too
    with pytest.raises(ValueError, match=r"task 'lm:csv' trains a causal LM but model .* is an encoder \(mpnet\)"):
        choose_head(entry, "lm:csv", "causal_lm")


def test_default_targets_outside_the_table_or_a_one_line_list_of_linear_layers():
    from transformers import AutoConfig, AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_config(AutoConfig.for_model("distilbert", vocab_size=100,
                                                                                **BODIES["distilbert"]))
    targets = default_targets(model)
    assert len(targets) == 12 and all(t.startswith("distilbert.transformer.layer.") for t in targets)
    assert "distilbert.transformer.layer.1.ffn.lin2" in targets
    no_blocks = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    with pytest.raises(ValueError, match=r"no repeated blocks of linear layers; pass target_modules=\[\.\.\.\] "
                                         r"from its linear layers: \['0', '2'\]"):
        default_targets(no_blocks)
