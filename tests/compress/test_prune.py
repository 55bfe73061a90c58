"""`lmforge prune` on tiny random Llamas: masks as asked, smaller models that load and run."""

from __future__ import annotations

import copy

import pytest
import torch

import lmforge
from lmforge.cli import main
from lmforge.compress import prune as prune_mod
from lmforge.compress.prune import PruneConfig, prune
from lmforge.compress.prune_calib import Calibration
from lmforge.compress.prune_structured import drop_channels, drop_heads, drop_layers
from lmforge.errors import LmforgeError
from lmforge.store import Store

TEXT = "Paris is the capital of France. The quick brown fox jumps over the lazy dog."


@pytest.fixture
def tiny(tiny_model_dir):
    lmforge.import_model(tiny_model_dir, "tiny")
    return "tiny"


@pytest.fixture
def calib(tiny_tokenizer):
    return Calibration(tiny_tokenizer, None, samples=8, seq_len=64)


def weights(name: str) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in lmforge.load(name).hf_model.state_dict().items()}


def block_weights(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if "_proj.weight" in k and ".layers." in k}


def logits(model, ids):
    with torch.no_grad():
        return model(ids).logits  # (1, T, vocab)


# -- unstructured ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "sparsity"), [("magnitude", 0.3), ("magnitude", 0.5), ("wanda", 0.6)]
)
def test_unstructured_sparsity_is_what_was_asked(tiny, method, sparsity):
    art = prune(tiny, "p", PruneConfig(method=method, sparsity=sparsity), quiet=True)
    before, after = weights(tiny), weights("p")
    for name, w in block_weights(after).items():
        zeros = (w == 0).sum().item()
        if method == "wanda":  # compared within each output row: every row has the same count
            assert ((w == 0).sum(1) == round(sparsity * w.shape[1])).all(), name
        else:
            assert zeros == round(sparsity * w.numel()), name
        kept = w != 0
        assert torch.equal(w[kept], before[name][kept])  # the rest is untouched
    for name in ("model.embed_tokens.weight", "lm_head.weight", "model.norm.weight"):
        assert torch.equal(before[name], after[name])
    config = art.meta["config"]
    assert art.step == "prune" and art.parent == "tiny" and config["method"] == method
    assert config["target_sparsity"] == sparsity
    # rounding: per layer (magnitude) or per row of 64 or 128 inputs (wanda)
    assert config["actual_sparsity"] == pytest.approx(
        sparsity, abs=1e-3 if method == "magnitude" else 1 / 128
    )
    assert config["params_before"] == config["params_after"]
    assert config["nonzero_params_after"] < config["params_before"]


@pytest.mark.parametrize("score", [None, "wanda"])
def test_nm_keeps_exactly_n_of_every_m(tiny, score):
    art = prune(tiny, "p", PruneConfig(method="nm", pattern="2:4", score=score), quiet=True)
    for name, w in block_weights(weights("p")).items():
        groups = (w != 0).reshape(w.shape[0], -1, 4).sum(-1)  # (out, in / 4) kept per group
        assert (groups == 2).all(), name
    assert art.meta["config"]["actual_sparsity"] == pytest.approx(0.5)


def test_wanda_differs_from_magnitude_when_activation_norms_vary(tiny_tokenizer, model_factory):
    model = model_factory(len(tiny_tokenizer))
    with torch.no_grad():  # inputs 0-7 of layer 0's q/k/v are 20x larger than the rest
        model.model.layers[0].input_layernorm.weight[:8] *= 20
    calib = Calibration(tiny_tokenizer, None, samples=4, seq_len=64)
    config = PruneConfig(method="wanda", sparsity=0.5).validate()
    by_magnitude = prune_mod.magnitude(copy.deepcopy(model), config, calib).masks
    by_wanda = prune_mod.wanda(copy.deepcopy(model), config, calib).masks
    name = "model.layers.0.self_attn.q_proj"
    assert not torch.equal(by_magnitude[name], by_wanda[name])
    # wanda keeps the weights that see large inputs; magnitude does not look at inputs
    assert by_wanda[name][:, :8].float().mean() > 0.9
    assert by_magnitude[name][:, :8].float().mean() < 0.7


def test_wanda_scores_weigh_each_input_by_its_norm():
    weight = torch.ones(3, 4)  # equal magnitudes: only the inputs' norms decide
    norms = torch.tensor([1.0, 4.0, 2.0, 3.0])
    keep = prune_mod.keep_largest_per_row(prune_mod.wanda_scores(weight, norms), 0.5)
    assert keep.tolist() == [[False, True, False, True]] * 3


# -- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"sparsity": 0}, "strictly between 0 and 1"),
        ({"sparsity": 1}, "strictly between 0 and 1"),
        ({"sparsity": 1.5}, "strictly between 0 and 1"),
        ({"method": "nm", "pattern": "2:3"}, "does not divide"),
        ({"method": "nm", "pattern": "4:2"}, "1 <= N < M"),
        ({"method": "nm", "pattern": "2:4", "sparsity": 0.3}, "contradicts"),
        ({"method": "magnitude", "pattern": "2:4"}, "--pattern is for --method nm"),
        ({"method": "heads", "sparsity": 0.1}, "removes 0 of the 2 KV head groups"),
        ({"method": "layers", "sparsity": 0.9}, "removes 2 of the 2 layers"),
        ({"method": "prune-all"}, "unknown pruning method"),
        ({"calib": "/no/such/file.txt", "method": "wanda"}, "no such calibration file"),
    ],
)
def test_bad_input_fails_before_any_work(tiny, options, message, monkeypatch):
    from lmforge.models import convert

    def no_loading(*args):
        raise AssertionError("weights were loaded before the input was checked")

    monkeypatch.setattr(convert, "read_hf", no_loading)
    with pytest.raises(LmforgeError, match=message):
        prune(tiny, "p", PruneConfig(**options), quiet=True)
    store = Store()
    assert [a.name for a in store.list()] == ["tiny"]
    assert not [p for p in store.root.iterdir() if p.name.startswith(".tmp")]


def test_unknown_options_are_errors():
    with pytest.raises(LmforgeError, match="unknown prune option.*sparsty"):
        PruneConfig.from_dict({"method": "wanda", "sparsty": 0.5})


def test_cli_prints_a_table_and_bad_input_is_one_line(tiny, capsys):
    main(["prune", tiny, "--method", "nm", "--pattern", "2:4", "--out", "p24"])
    out = capsys.readouterr().out
    assert "p24" in out and "50.0%" in out and "size on disk" in out
    with pytest.raises(SystemExit) as exit_info:
        main(["prune", tiny, "--sparsity", "1.5", "--out", "bad"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sparsity must be strictly between 0 and 1" in err[0]


# -- structured ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "key", "before", "after"),
    [
        ("heads", "num_key_value_heads", 2, 1),
        ("channels", "intermediate_size", 128, 64),
        ("layers", "num_hidden_layers", 2, 1),
    ],
)
def test_structured_pruning_gives_a_smaller_model_that_loads_and_runs(
    tiny, tiny_tokenizer, method, key, before, after
):
    from lmforge.engine.native import NativeDecoder

    art = prune(tiny, "small", PruneConfig(method=method, sparsity=0.5), quiet=True)
    source = lmforge.load(tiny)
    model = lmforge.load("small")  # the normal loader: AutoModelForCausalLM.from_pretrained
    assert getattr(source.hf_model.config, key) == before
    assert getattr(model.hf_model.config, key) == after
    if method == "heads":  # the GQA grouping is kept: 2 query heads per KV head
        assert model.hf_model.config.num_attention_heads == 2
    config = art.meta["config"]
    assert config["params_after"] < config["params_before"]
    assert config["params_after"] == sum(p.numel() for p in model.hf_model.parameters())
    assert config["actual_sparsity"] == 0.5
    assert art.size_bytes() < Store().get(tiny).size_bytes()

    assert isinstance(model.decoder, NativeDecoder)
    ids = torch.tensor([tiny_tokenizer.encode(TEXT)])  # (1, T)
    cache = model.decoder.new_cache(1, ids.shape[1])
    native = model.decoder.forward(ids, cache, all_logits=True)  # (1, T, vocab)
    torch.testing.assert_close(native, logits(model.hf_model, ids), atol=1e-4, rtol=0)
    assert isinstance(model.generate(TEXT, max_tokens=4), str)


def test_surgery_equals_zeroing_what_it_removes(tiny_tokenizer, model_factory):
    """Removing heads / channels / layers computes exactly what the dense model computes
    with those parts switched off (their output columns zeroed, or the block skipped)."""
    model = model_factory(len(tiny_tokenizer))
    ids = torch.tensor([tiny_tokenizer.encode(TEXT)])
    layers = model.model.layers

    dense = copy.deepcopy(model)  # KV group 0 of layer 0 and group 1 of layer 1 off
    for i, group in ((0, 0), (1, 1)):  # 4 query heads of 16 dims, 2 per KV group
        with torch.no_grad():
            dense.model.layers[i].self_attn.o_proj.weight[:, group * 32 : (group + 1) * 32] = 0
    small = drop_heads(model, [[1], [0]])
    torch.testing.assert_close(logits(small, ids), logits(dense, ids), atol=1e-5, rtol=0)

    keep = [torch.arange(0, 128, 2), torch.arange(64, 128)]
    dense = copy.deepcopy(model)
    for i, idx in enumerate(keep):
        off = torch.ones(128, dtype=torch.bool)
        off[idx] = False
        with torch.no_grad():
            dense.model.layers[i].mlp.down_proj.weight[:, off] = 0
    small = drop_channels(model, keep)
    assert small.config.intermediate_size == 64
    torch.testing.assert_close(logits(small, ids), logits(dense, ids), atol=1e-5, rtol=0)

    skipped = copy.deepcopy(model)
    skipped.model.layers[0].forward = lambda hidden_states, *args, **kwargs: hidden_states
    small = drop_layers(model, [1])
    assert len(small.model.layers) == 1 and small.model.layers[0].self_attn.layer_idx == 0
    torch.testing.assert_close(logits(small, ids), logits(skipped, ids), atol=1e-5, rtol=0)
    assert len(layers) == 2  # the source model is left as it was


def test_structured_methods_remove_what_measures_least(tiny_tokenizer, model_factory, calib):
    model = model_factory(len(tiny_tokenizer))
    with torch.no_grad():
        model.model.layers[1].self_attn.o_proj.weight.mul_(1e-3)  # layer 1 barely moves h
        model.model.layers[1].mlp.down_proj.weight.mul_(1e-3)
        model.model.layers[0].self_attn.o_proj.weight[:, 32:].mul_(1e-3)  # group 1 is quiet
        model.model.layers[0].mlp.down_proj.weight[:, :64].mul_(1e-3)  # channels 0-63 too
    config = PruneConfig(method="layers", sparsity=0.5)
    assert prune_mod.layers(copy.deepcopy(model), config, calib).removed == {"layers": [1]}
    config = PruneConfig(method="heads", sparsity=0.5)
    assert prune_mod.heads(copy.deepcopy(model), config, calib).removed["kv_groups"][0] == [1]
    config = PruneConfig(method="channels", sparsity=0.5)
    small = prune_mod.channels(copy.deepcopy(model), config, calib).model
    kept = small.model.layers[0].mlp.down_proj.weight  # (hidden, 64): the channels 64-127
    torch.testing.assert_close(kept, model.model.layers[0].mlp.down_proj.weight[:, 64:])


# -- recovery -----------------------------------------------------------------------------------


def test_recovery_keeps_the_sparsity_pattern_exactly_and_lowers_the_loss(tiny):
    prune(tiny, "plain", PruneConfig(method="nm", pattern="2:4"), quiet=True)
    config = PruneConfig(method="nm", pattern="2:4", recover=6, recover_lr=1e-2)
    art = prune(tiny, "healed", config, quiet=True)
    plain, healed = block_weights(weights("plain")), block_weights(weights("healed"))
    for name, w in healed.items():
        assert torch.equal(w == 0, plain[name] == 0), name  # the very same zeros
    assert any(not torch.equal(w, plain[n]) for n, w in healed.items())  # and it did train
    rec = art.meta["recovery"]
    assert rec["steps"] == 6 and rec["calib_loss_after"] < rec["calib_loss_before"]
    assert art.meta["config"]["actual_sparsity"] == pytest.approx(0.5)
    store = Store()  # the temporary adapter and its run folder are gone
    assert sorted(a.name for a in store.list()) == ["healed", "plain", "tiny"]
    assert not (store.root.parent / "runs" / "healed-recover-tmp").exists()


def test_recovery_after_structured_pruning_is_a_dense_merge(tiny):
    config = PruneConfig(method="channels", sparsity=0.5, recover=3, recover_lr=1e-2)
    art = prune(tiny, "small", config, quiet=True)
    model = lmforge.load("small")
    assert model.hf_model.config.intermediate_size == 64
    assert art.meta["recovery"]["calib_loss_after"] < art.meta["recovery"]["calib_loss_before"]
