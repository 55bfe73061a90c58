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


# The processor's template: content is a string or a list of {"type": "image"|"text"} parts.
VLM_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% if m['content'] is string %}"
    "{{ m['content'] }}{% else %}{% for p in m['content'] %}{% if p['type'] == 'image' %}<image>"
    "{% else %}{{ p['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def make_vlm(folder, tokenizer):
    """Save a tiny random LLaVA and its processor (28x28 images, 4 image tokens) to `folder`."""
    import copy

    import torch
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    tok = copy.deepcopy(tokenizer)
    tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
    vision = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        image_size=28, patch_size=14,
    )  # fmt: skip
    text = LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        bos_token_id=1, eos_token_id=2, initializer_range=0.3,
    )  # fmt: skip
    config = LlavaConfig(
        vision_config=vision, text_config=text, vision_feature_layer=-1,
        image_token_index=tok.convert_tokens_to_ids("<image>"),
    )  # fmt: skip
    torch.manual_seed(0)
    LlavaForConditionalGeneration(config).save_pretrained(folder)
    images = CLIPImageProcessor(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28})
    LlavaProcessor(
        image_processor=images, tokenizer=tok, patch_size=14, num_additional_image_tokens=1,
        vision_feature_select_strategy="default", chat_template=VLM_TEMPLATE,
    ).save_pretrained(folder)  # fmt: skip
    return folder


@pytest.fixture(scope="session")
def vlm_factory():
    """`make_vlm` as a fixture: `vlm_factory(folder, tokenizer)` saves a tiny LLaVA there."""
    return make_vlm
