"""A student for `lmforge distill`: cut from its teacher, or given, and the loss it trains on.

`make_student` builds a real smaller model of the teacher's class: the teacher's config with
K decoder layers, every weight outside the layers (embeddings, final norm, LM head) and the K
chosen layers copied. A given student (`check_student`) must share the teacher's tokenizer.

`DistillLoss` is, summed over a packed batch's supervised positions,

    alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE

where CE is the student's cross-entropy on the label (Hinton et al. 2015: the T^2 keeps the
soft term's gradients at one scale whatever T). The teacher runs under `no_grad`.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.nn.functional as F

from lmforge.errors import InvalidInputError
from lmforge.store import Store
from lmforge.tune.data import IGNORE, Batch
from lmforge.tune.loss import supervised_logits


def spaced_layers(n_teacher: int, k: int) -> list[int]:
    """k of n layer indices, evenly spaced, the first and the last always among them."""
    if k == 1:
        return [0]
    # floor(x + 0.5), not round(): banker's rounding could map two neighbours to one index
    return [int(i * (n_teacher - 1) / (k - 1) + 0.5) for i in range(k)]


def check_layers(layers: list[int], n_teacher: int) -> list[int]:
    """`layers`, checked to be distinct, increasing teacher layer indices, fewer than all."""
    if not 1 <= len(layers) < n_teacher:
        raise InvalidInputError(
            f"the teacher has {n_teacher} layers, so a student needs 1 to {n_teacher - 1}, "
            f"not {len(layers)}",
            f"pass --student-layers between 1 and {n_teacher - 1}",
        )
    if any(not 0 <= i < n_teacher for i in layers) or sorted(set(layers)) != list(layers):
        raise InvalidInputError(
            f"--layers {','.join(map(str, layers))} are not distinct increasing indices of "
            f"the teacher's {n_teacher} layers",
            f"use numbers from 0 to {n_teacher - 1}, in order",
        )
    return list(layers)


def _layer_list(model) -> str:
    """The module path of the decoder's block list (`model.layers` for Llama, Qwen ...)."""
    n = model.config.num_hidden_layers
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n and name:
            return name
    raise InvalidInputError(
        f"cannot find the {n} decoder layers of this {model.config.model_type} model",
        "pass a student model folder with --student instead",
    )


def make_student(teacher, layers: list[int]):
    """A new model of the teacher's class with `len(layers)` decoder layers, each a copy of
    the teacher layer named in `layers`; every other weight (embeddings, norms, LM head) is
    copied too. A strict `load_state_dict` proves the student holds exactly these."""
    from transformers import AutoModelForCausalLM

    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = len(layers)
    if isinstance(getattr(config, "layer_types", None), list):  # per-layer attention kinds
        config.layer_types = [config.layer_types[i] for i in layers]
    student = AutoModelForCausalLM.from_config(config)  # random init, overwritten below
    prefix = _layer_list(teacher) + "."
    new_index = {old: new for new, old in enumerate(layers)}
    weights = {}
    for key, value in teacher.state_dict().items():
        if key.startswith(prefix):  # "model.layers.7.mlp.up_proj.weight"
            index, rest = key[len(prefix) :].split(".", 1)
            if int(index) in new_index:
                weights[f"{prefix}{new_index[int(index)]}.{rest}"] = value
        else:
            weights[key] = value
    student.load_state_dict(weights, strict=True)
    student.generation_config = copy.deepcopy(teacher.generation_config)
    return student


def check_same_tokenizer(teacher_tok, student_tok) -> None:
    """Stop unless both tokenizers have the same vocabulary and special tokens."""
    tv, sv = teacher_tok.get_vocab(), student_tok.get_vocab()
    problem = None
    if tv != sv:
        moved = sum(sv.get(t) != i for t, i in tv.items()) + len(sv.keys() - tv.keys())
        problem = f"vocabularies differ ({len(tv)} vs {len(sv)} tokens, {moved} differ)"
    else:
        for name in ("bos_token", "eos_token", "pad_token", "unk_token"):
            t, s = getattr(teacher_tok, name, None), getattr(student_tok, name, None)
            if str(t) != str(s):
                problem = f"{name} is {t!r} for the teacher, {s!r} for the student"
                break
    if problem:
        raise InvalidInputError(
            f"the student's tokenizer is not the teacher's: {problem}",
            "distillation compares next-token distributions token by token: give a student "
            "with the teacher's tokenizer, or cut one from the teacher with --student-layers K",
        )


def check_student(spec: str, teacher_cfg, teacher_tok, store: Store) -> tuple[Path, bool]:
    """(model folder, True) or (config.json, False) of a --student: a config file, a folder
    without weights, or anything `lmforge.load` takes. Its tokenizer (if it has one) and its
    vocabulary size are checked against the teacher's; no weights are read."""
    from transformers import AutoConfig, AutoTokenizer

    from lmforge.models.sources import resolve

    path = Path(spec).expanduser()
    if path.is_file() and path.suffix == ".json":
        config_file, weights = path, False
    elif (
        path.is_dir() and (path / "config.json").is_file() and not list(path.glob("*.safetensors"))
    ):
        config_file, weights = path / "config.json", False
    else:
        path, _, art = resolve(spec, store)
        if art is not None and art.kind == "adapter":
            raise InvalidInputError(
                f"{spec} is an adapter", f"run `lmforge merge {spec} --out NAME` first"
            )
        config_file, weights = path / "config.json", True
    try:
        cfg = AutoConfig.from_pretrained(str(config_file))
    except Exception as e:  # transformers raises many kinds for a bad config
        raise InvalidInputError(
            f"{config_file}: not a model config ({str(e)[:120]})",
            "pass a config.json of a causal LM",
        ) from e
    folder = config_file.parent
    if (folder / "tokenizer.json").is_file() or (folder / "tokenizer_config.json").is_file():
        check_same_tokenizer(teacher_tok, AutoTokenizer.from_pretrained(str(folder)))
    if cfg.vocab_size != teacher_cfg.vocab_size:
        raise InvalidInputError(
            f"the student's vocabulary has {cfg.vocab_size} rows, the teacher's {teacher_cfg.vocab_size}",
            "give the student the teacher's vocab_size and tokenizer",
        )
    return (path if weights else config_file), weights


def load_student(path: Path, weights: bool):
    """The student `check_student` found: its weights, or a fresh init from its config."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from lmforge.models.convert import read_hf

    if weights:
        return read_hf(path, "hf")[0]
    return AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(str(path)))


# -- the loss --------------------------------------------------------------------------------


class DistillLoss(torch.nn.Module):
    """Summed `alpha * T^2 * KL + (1 - alpha) * CE` over a packed batch's supervised positions.

    Both models run under `attention.using_packed_attention`. The trainer divides by the
    step's supervised tokens; `take_metrics` gives mean KL (at T) and CE per position.
    """

    def __init__(self, student, teacher, temperature: float, alpha: float):
        super().__init__()
        self.student, self.teacher = student, teacher.requires_grad_(False)
        self.temperature, self.alpha = temperature, alpha
        self._tally = [0.0, 0.0, 0]  # KL sum, CE sum, positions

    def forward(self, batch: Batch) -> torch.Tensor:
        labels = batch.labels[:, 1:]
        target = labels[labels != IGNORE]  # (K,)
        student = supervised_logits(self.student, batch, packed=True).float()  # (K, vocab)
        with torch.no_grad():
            teacher = supervised_logits(self.teacher, batch, packed=True).float()  # (K, vocab)
        t = self.temperature
        kl = F.kl_div(
            F.log_softmax(student / t, dim=-1),
            F.log_softmax(teacher / t, dim=-1),
            log_target=True,
            reduction="sum",
        )
        ce = F.cross_entropy(student, target, reduction="sum")
        self._tally = [
            self._tally[0] + float(kl.detach()),
            self._tally[1] + float(ce.detach()),
            self._tally[2] + target.numel(),
        ]
        return self.alpha * t * t * kl + (1 - self.alpha) * ce

    def take_metrics(self, reduce=None) -> dict[str, float]:
        """Mean KL and CE per supervised position since the last call (then reset)."""
        reduce = reduce or (lambda x: x)
        kl, ce, n = (reduce(x) for x in self._tally)
        self._tally = [0.0, 0.0, 0]
        return {"kl": round(kl / n, 5), "ce": round(ce / n, 5)} if n else {}
