"""Engine fixtures: a tiny byte-level BPE tokenizer and tiny random Llama-family models.

Everything is built in-process (no network, no weights on disk) and session-scoped, so the
whole engine suite trains one tokenizer and builds each model once.
"""

from __future__ import annotations

import pytest
import torch

# Written for these tests: English, accented Latin, Japanese and emoji, so that the byte-level
# BPE learns whole words for ASCII but splits the multi-byte characters over several tokens.
CORPUS = [
    "The engine reads one token at a time and writes its keys into the cache.",
    "A small model can still say odd things: café, naïve, résumé, déjà vu.",
    "日本語のテキストもバイトに分かれる。",
    "Emoji take four bytes each: 🙂 and 🚀, sometimes more.",
    "Stop strings end the answer; the stop string itself is never returned.",
]

# model_type -> (config class, model class) for the architectures the native path covers
_ARCHES = {
    "llama": ("LlamaConfig", "LlamaForCausalLM"),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM"),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM"),
}


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Run each engine test on one thread, then restore the setting.

    These models are too small to gain from a second thread, and when another process keeps
    a core busy, two OpenMP threads wait on each other: measured on 2 cores, the suite takes
    ~4 s on one thread and ~90 s on two.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def bpe_tokenizer():
    """A byte-level BPE tokenizer (384 tokens) trained on CORPUS; its EOS is <|endoftext|>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=384,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")


@pytest.fixture(scope="session")
def build_model(bpe_tokenizer):
    """`build_model(model_type="llama", seed=0, **config)`: a tiny random decoder in eval mode.

    2 layers, hidden 64, 4 query heads over 2 KV heads (GQA), vocab sized to `bpe_tokenizer`.
    A large `initializer_range` makes greedy output varied rather than one repeated token.
    Norm weights (init 1) and biases (init 0) get noise too, so a path that skipped a norm
    weight or a bias would change the logits.
    """
    import transformers

    def build(model_type: str = "llama", seed: int = 0, **overrides):
        config_cls, model_cls = (getattr(transformers, name) for name in _ARCHES[model_type])
        torch.manual_seed(seed)
        config = config_cls(
            **{
                "vocab_size": len(bpe_tokenizer),
                "hidden_size": 64,
                "intermediate_size": 128,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "num_key_value_heads": 2,
                "head_dim": 16,
                "max_position_embeddings": 256,
                "initializer_range": 0.3,
                "tie_word_embeddings": False,
                **overrides,
            }
        )
        model = model_cls(config).eval()
        with torch.no_grad():
            for p in model.parameters():
                if p.ndim == 1:  # RMSNorm weights and linear biases
                    p.add_(0.2 * torch.randn_like(p))
        return model

    return build


@pytest.fixture(scope="session")
def llama(build_model):
    """The default tiny Llama shared by the decode-loop tests (never modified by them)."""
    return build_model("llama")
