"""Shared fixtures: an isolated store, and tiny random models saved as real HF folders."""

from __future__ import annotations

from pathlib import Path

import pytest

# Text written for these tests (no third-party data): plain English, accents, CJK, emoji.
CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Paris is the capital of France. Rome is the capital of Italy.",
    "A byte-level tokenizer splits café, naïve and 日本語 into bytes.",
    "Rockets 🚀 and smiles 🙂 take four bytes each.",
    "user assistant system: hello, how are you today?",
]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def make_tokenizer(vocab_size: int = 320):
    """A small byte-level BPE tokenizer trained on CORPUS, with a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def make_model(vocab_size: int, seed: int = 0, **overrides):
    """A tiny random Llama (2 layers, hidden 64) whose greedy output is varied."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        initializer_range=0.3,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
    )
    cfg.update(overrides)
    return LlamaForCausalLM(LlamaConfig(**cfg)).eval()


@pytest.fixture(autouse=True)
def lmforge_home(tmp_path_factory, monkeypatch) -> Path:
    """Every test gets its own empty $LMFORGE_HOME, so no test touches ~/.lmforge."""
    home = tmp_path_factory.mktemp("lmforge-home")
    monkeypatch.setenv("LMFORGE_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return make_tokenizer()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    """A Hugging Face folder (config.json, model.safetensors, tokenizer) of a tiny Llama."""
    folder = tmp_path_factory.mktemp("tiny-llama")
    model = make_model(len(tiny_tokenizer))
    model.save_pretrained(folder, safe_serialization=True)
    tiny_tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def model_factory():
    """`make_model` as a fixture (conftest modules cannot be imported by name from subfolders)."""
    return make_model
