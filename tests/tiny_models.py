"""Tiny checkpoints built in tests with a published protocol's architecture and special tokens."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from transformers import Qwen2Config

from langchain_ttc.arith.tokenizer import build_tokenizer

QWEN_PRM_CODE = '''"""A Qwen2.5-Math-PRM-shaped model: Qwen2 layers and a two-layer two-class head per token."""
from torch import nn
from transformers import Qwen2Model, Qwen2PreTrainedModel


class Qwen2ForProcessRewardModel(Qwen2PreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.model = Qwen2Model(config)
        size = config.hidden_size
        self.score = nn.Sequential(nn.Linear(size, size), nn.ReLU(), nn.Linear(size, config.num_labels))
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return (self.score(hidden),)
'''


def build_qwen_prm(directory: Path) -> int:
    """Save a random tiny ``Qwen2ForProcessRewardModel`` (remote code, as published) and return the ``<extra_0>`` id.

    The architecture name and weight names are those of ``Qwen/Qwen2.5-Math-PRM-7B``, so vLLM loads
    it with its own ``Qwen2ForProcessRewardModel`` and transformers with ``trust_remote_code=True``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "modeling_qwen2_rm.py").write_text(QWEN_PRM_CODE)
    spec = importlib.util.spec_from_file_location("tiny_qwen2_rm", directory / "modeling_qwen2_rm.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tokenizer = build_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": ["<extra_0>"]})
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, num_labels=2, pad_token_id=tokenizer.pad_token_id, max_position_embeddings=1024,
    )  # fmt: skip
    config.auto_map = {"AutoModel": "modeling_qwen2_rm.Qwen2ForProcessRewardModel"}
    torch.manual_seed(0)
    model = module.Qwen2ForProcessRewardModel(config)
    with torch.no_grad():  # a head wide enough that step scores differ visibly
        for parameter in model.score.parameters():
            parameter.normal_(0.0, 0.1)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return int(tokenizer.convert_tokens_to_ids("<extra_0>"))
