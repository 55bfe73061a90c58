"""`lmforge tune`: the training loop, its checkpoints, and the adapter artifact it writes.

One optimizer step consumes `grad_accum * world` micro-batches of packed rows. The data
order of epoch e is a permutation drawn from a generator seeded with (seed, e), so a
resumed run sees the very batches an uninterrupted run would; the checkpoint holds the
trainable weights, the optimizer and scheduler, every RNG state and the loop's position,
so `--resume` continues bit for bit. Each micro-batch's loss is divided by the supervised
tokens of its whole step, so accumulation and DDP give the same gradient as one big batch.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from lmforge import quickstart
from lmforge.energy import EnergyMeter
from lmforge.errors import InvalidInputError, LmforgeError
from lmforge.models.vlm import is_vlm_folder
from lmforge.tune.attention import using_packed_attention
from lmforge.tune.checkpoint import (
    file_digest,
    fingerprint,
    load_checkpoint,
    run_dir,
    save_checkpoint,
)
from lmforge.tune.config import TuneConfig, load_config

__all__ = ["TuneConfig", "Trainer", "load_config", "tune"]


# -- schedule and data order -----------------------------------------------------------------


def lr_at(step: int, total: int, peak: float, warmup: float) -> float:
    """Linear warmup over `warmup * total` steps, then cosine decay to 10% of the peak."""
    warm = max(int(round(warmup * total)), 1)
    if step < warm:
        return peak * (step + 1) / warm
    progress = (step - warm) / max(total - warm, 1)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The order of the packed rows in `epoch`: the same for every run with this seed."""
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=g).tolist()


# -- the run ---------------------------------------------------------------------------------


@dataclass
class Progress:
    """Where the loop is; saved in every checkpoint."""

    step: int = 0  # optimizer steps done
    epoch: int = 0
    cursor: int = 0  # micro-batches of this epoch consumed
    best_eval: float | None = None
    bad_evals: int = 0
    history: list[dict] = field(default_factory=list)


class Trainer:
    """Trains `model` (already wrapped by `methods.wrap`) on packed groups of examples."""

    def __init__(
        self, model, config: TuneConfig, train_groups, eval_groups, pad_id: int, loss=None
    ):
        """`loss`: a summed-loss module over packed batches to use instead of the method's
        (distillation passes its own); None picks CausalLMLoss, or DPOLoss for dpo."""
        from lmforge.tune.distributed import World

        self.model, self.config = model, config
        self.world = World.current(shard=config.fsdp)
        if config.method == "dpo":  # preference pairs, one pair per row
            from lmforge.tune.dpo import DPOLoss, collate

            loss = DPOLoss(model, config.beta) if loss is None else loss
        else:
            from lmforge.tune.data import collate
            from lmforge.tune.loss import CausalLMLoss

            virtual = config.method in ("prompt", "prefix")
            if loss is None:
                loss = CausalLMLoss(model, virtual_tokens=virtual, packed=not virtual)
        self.loss_fn = self.world.wrap(loss)
        self.collate = functools.partial(collate, pad_id=pad_id)
        self.metrics: dict = {}  # the loss's own figures (DPO rewards) of the last step / eval
        self.eval_metrics: dict = {}
        self.train_groups, self.eval_groups, self.pad_id = train_groups, eval_groups, pad_id
        params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            params, lr=config.peak_lr, weight_decay=config.weight_decay
        )
        self.params = params
        self.schedule()
        self.state = Progress()

    def schedule(self) -> None:
        """Steps per epoch, in all, and between evals and saves, from the config's batch sizes
        (again after the preflight plan changed them: the wrapped loss is kept, as FSDP shards
        a model once)."""
        c = self.config
        per_step = c.micro_batch * c.grad_accum * self.world.size
        self.steps_per_epoch = max(math.ceil(len(self.train_groups) / per_step), 1)
        self.total_steps = c.max_steps or self.steps_per_epoch * c.epochs
        self.eval_every = c.eval_every or max(self.total_steps // 10, 1)
        self.save_every = c.save_every or self.eval_every

    # one optimizer step's micro-batches, for every rank; advances the epoch as needed
    def _step_batches(self) -> list[list]:
        c, out = self.config, []
        need = c.grad_accum * self.world.size
        while len(out) < need:
            order = epoch_order(len(self.train_groups), c.seed, self.state.epoch)
            n_micro = math.ceil(len(order) / c.micro_batch)
            if self.state.cursor >= n_micro:
                self.state.epoch, self.state.cursor = self.state.epoch + 1, 0
                continue
            at = self.state.cursor * c.micro_batch
            out.append([self.train_groups[i] for i in order[at : at + c.micro_batch]])
            self.state.cursor += 1
        return out

    def _loss_metrics(self, reduce=None) -> dict:
        """What the loss module tallied since last asked (DPO: reward accuracy and margins)."""
        take = getattr(getattr(self.loss_fn, "module", self.loss_fn), "take_metrics", None)
        return take(reduce) if take else {}

    def train_step(self) -> tuple[float, int]:
        """One optimizer step; (mean loss per supervised token, tokens seen by this rank)."""
        self._loss_metrics()  # drop what a preflight pass tallied
        micro = self._step_batches()
        batches = [self.collate(groups) for groups in micro]
        total = sum(b.supervised for b in batches)  # over every rank: all know the order
        mine = batches[self.world.rank :: self.world.size]
        lr = lr_at(self.state.step, self.total_steps, self.config.peak_lr, self.config.warmup)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss_sum, tokens = 0.0, 0
        for i, batch in enumerate(mine):
            with self.world.no_sync(self.loss_fn, last=i == len(mine) - 1):
                loss = self.loss_fn(batch)
                (loss * self.world.size / max(total, 1)).backward()
            loss_sum += float(loss.detach())
            tokens += batch.tokens
        loss_sum = self.world.sum(loss_sum)
        self.metrics = self._loss_metrics(self.world.sum)
        mean = loss_sum / max(total, 1)
        if not math.isfinite(mean):
            self.optimizer.zero_grad(set_to_none=True)
            raise FloatingPointError(f"loss is {mean} at step {self.state.step + 1}")
        if self.config.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.config.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.state.step += 1
        return mean, tokens

    @torch.no_grad()
    def eval_loss(self) -> float | None:
        """Mean loss per supervised token over the held-out rows (every rank computes it)."""
        if not self.eval_groups:
            return None
        was_training = self.model.training
        self.model.eval()
        self._loss_metrics()  # drop what training tallied
        total = count = 0.0
        for at in range(0, len(self.eval_groups), self.config.micro_batch):
            batch = self.collate(self.eval_groups[at : at + self.config.micro_batch])
            total += float(self.loss_fn(batch))
            count += batch.supervised
        self.eval_metrics = {f"eval_{k}": v for k, v in self._loss_metrics().items()}
        self.model.train(was_training)
        return total / max(count, 1)


def tune(base: str | None, config: TuneConfig, *, resume: bool = False, quiet: bool = False):
    """Train an adapter (or a full model) on `config.data`; return the new store artifact."""
    from rich.console import Console

    from lmforge.models.convert import read_hf
    from lmforge.models.sources import resolve
    from lmforge.store import Store
    from lmforge.tune import data as tdata
    from lmforge.tune import dpo
    from lmforge.tune.distributed import World, full_state, init_from_env
    from lmforge.tune.methods import resolve_precision, wrap
    from lmforge.tune.preflight import plan_run

    init_from_env()
    world = World.current(shard=config.fsdp)
    console = Console(quiet=quiet or not world.main)
    store = Store()
    start = dpo.starting_adapter(config.adapter, store) if config.adapter else None
    if start is not None:  # dpo from an existing LoRA: the base is the adapter's
        base = base or start.parent
    folder, base_name, base_art = resolve(base, store)
    if base_art is not None and base_art.kind == "adapter":
        raise InvalidInputError(
            f"{base_name} is an adapter; tune its base, or merge it first",
            f"pass --adapter {base_name} and its base as MODEL"
            if config.method == "dpo"
            else f"run `lmforge merge {base_name} --out NAME`, then tune NAME",
        )
    if start is not None and start.parent != base_name:
        raise InvalidInputError(
            f"adapter {start.name} was trained on {start.parent}, not {base_name}",
            f"tune {start.parent} with it, or leave MODEL out",
        )
    out = config.out or f"{base_name}-{config.method}"
    config.out = out
    if store.exists(out) and not resume:
        raise InvalidInputError(
            f"an artifact named {out!r} already exists", "choose another --out, or remove it"
        )
    if is_vlm_folder(folder):  # image+text chat through the processor: a loop of its own
        from lmforge.tune.vision import tune_vlm

        return tune_vlm(folder, base_name, base_art, config, store, console)
    if config.data == "quickstart":  # the bundled fictional-product chat set
        config.data = str(quickstart.write(run_dir(out) / "quickstart")[0])
    hf, tok = read_hf(folder, "hf")
    config.precision = resolve_precision(config.method, config.precision)
    if config.precision == "bf16":  # the frozen base; peft keeps the adapter in fp32
        hf = hf.to(torch.bfloat16)
    if config.method == "dpo":
        examples, stats = dpo.read_pairs(config.data, tok, config.seq_len)
    else:
        examples, stats = tdata.read_examples(config.data, tok, config.seq_len, config.format)
    train, held = tdata.split(examples, config.eval_fraction, config.seed)
    if config.packs:
        train_groups, eval_groups = (
            tdata.pack(train, config.seq_len),
            tdata.pack(held, config.seq_len),
        )
    else:
        train_groups, eval_groups = [[e] for e in train], [[e] for e in held]
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    if config.method == "dpo":  # the reference: the starting weights, scored once, here
        model = dpo.wrap(hf, config.adapter_options(), start)
        dpo.set_reference(model, examples, pad_id, config.micro_batch, fresh=start is None)
    else:
        model = wrap(hf, config.method, config.adapter_options())
    model.train()
    attention = contextlib.ExitStack()  # span-by-span attention while training (tune.attention)
    if config.method not in ("prompt", "prefix"):
        attention.enter_context(using_packed_attention(model))
    trainer = Trainer(model, config, train_groups, eval_groups, pad_id)
    plan = plan_run(
        model,
        trainer.loss_fn,
        train_groups,
        trainer.collate,
        config.micro_batch,
        config.grad_accum,
        trainer.total_steps,
        config.gradient_checkpointing,
        shards=world.size if world.shard else 1,
    )
    config.micro_batch, config.grad_accum = plan.micro_batch, plan.grad_accum
    config.gradient_checkpointing = plan.gradient_checkpointing
    trainer.schedule()  # with the plan's sizes
    _print_plan(console, base_name, out, config, stats, plan, len(train), len(held), world)

    digest = file_digest(config.data)
    key = fingerprint(config, base_name, digest)
    ckpt = run_dir(out) / "checkpoint"
    if resume and (ckpt / "state.json").is_file():
        saved = load_checkpoint(ckpt, model, trainer.optimizer)
        if saved.pop("fingerprint", None) != key:
            raise InvalidInputError(
                f"the checkpoint of {out!r} was made with other data or settings",
                "resume with the same command, or start a new --out",
            )
        trainer.state = Progress(**saved)
        console.print(f"resuming {out} at step {trainer.state.step}")
    elif resume:
        console.print(f"no checkpoint for {out}: starting from the beginning")

    started = time.perf_counter()
    tokens_seen = 0
    start_eval = trainer.eval_loss() if trainer.state.step == 0 else None
    stopped = "steps"
    with EnergyMeter() as energy, _bar(console) as bar:
        handle = bar.add_task(out, total=trainer.total_steps, completed=trainer.state.step, info="")
        while trainer.state.step < trainer.total_steps:
            try:
                loss, tokens = trainer.train_step()
            except FloatingPointError as e:
                last = _checkpoint_step(ckpt)
                raise LmforgeError(
                    f"{e}: training stopped; the last good checkpoint (step {last}) is kept in {ckpt}",
                    "lower --lr, check the data, then run again with --resume",
                ) from e
            tokens_seen += world.sum(tokens)
            s = trainer.state
            record = {
                "step": s.step,
                "loss": round(loss, 5),
                "lr": trainer.optimizer.param_groups[0]["lr"],
                **trainer.metrics,
            }
            if s.step % trainer.eval_every == 0 or s.step == trainer.total_steps:
                record["eval_loss"] = trainer.eval_loss()
                record.update(trainer.eval_metrics)
                if record["eval_loss"] is not None:
                    if s.best_eval is None or record["eval_loss"] < s.best_eval - 1e-4:
                        s.best_eval, s.bad_evals = record["eval_loss"], 0
                    else:
                        s.bad_evals += 1
            s.history.append(record)
            rate = tokens_seen / max(time.perf_counter() - started, 1e-9)
            bar.update(handle, completed=s.step, info=f"loss {loss:.3f}  {rate:,.0f} tok/s")
            if s.step % trainer.save_every == 0 or s.step == trainer.total_steps:
                progress = {**asdict(s), "fingerprint": key}  # every rank gathers, rank 0 writes
                save_checkpoint(ckpt, model, trainer.optimizer, progress, write=world.main)
            world.barrier()
            if config.patience and s.bad_evals >= config.patience:
                stopped = "early stopping"
                break
    seconds = time.perf_counter() - started
    final_eval = trainer.eval_loss()
    summary = {
        "stopped": stopped,
        "steps": trainer.state.step,
        "seconds": round(seconds, 3),
        "tokens": tokens_seen,
        "tokens_per_s": round(tokens_seen / max(seconds, 1e-9), 2),
        "train_loss": trainer.state.history[-1]["loss"] if trainer.state.history else None,
        "eval_loss_before": start_eval,
        "eval_loss": final_eval,
        **trainer.eval_metrics,
        "world_size": world.size,
        "fsdp": world.shard,
        "history": trainer.state.history,
    }
    attention.close()  # the saved model keeps its own attention implementation
    # whole tensors, gathered from every rank under FSDP; the model's own ones otherwise
    weights = full_state(model, trainable=config.method != "full", keep=world.main)
    if not world.main:
        return None
    artifact = _write_artifact(
        store, out, base_name, model, tok, config, stats, plan, summary, energy.result, digest,
        weights,
    )  # fmt: skip
    console.print(
        f"wrote {out}: loss {summary['train_loss']}, eval loss "
        f"{_fmt(start_eval)} -> {_fmt(final_eval)}, {summary['tokens_per_s']:,.0f} tok/s, "
        f"{seconds:.0f} s"
    )
    return artifact


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _checkpoint_step(ckpt: Path) -> int:
    try:
        return json.loads((ckpt / "state.json").read_text())["step"]
    except (OSError, ValueError, KeyError):
        return 0


def _bar(console):
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
    from rich.progress import Progress as Bar

    return Bar(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )


def _print_plan(console, base, out, config, stats, plan, n_train, n_held, world) -> None:
    from rich.table import Table

    t = Table(title=f"tune {base} -> {out} ({config.method})", show_header=False)
    n = world.size
    rows = [
        ("data", f"{stats.format}: {stats.examples} examples ({n_train} train, {n_held} held out)"),
        ("tokens", f"{stats.tokens:,} ({stats.supervised:,} supervised)"),
        ("truncated / dropped", f"{stats.truncated} / {stats.dropped} at {config.seq_len} tokens"),
        ("parameters", f"{plan.trainable:,} trainable of {plan.params:,}"),
        ("batch", f"{plan.micro_batch} rows x {plan.grad_accum} accumulation x {n} processes"),
        ("gradient checkpointing", "on" if plan.gradient_checkpointing else "off"),
        ("precision", "bf16 base, fp32 adapter" if config.precision == "bf16" else "fp32"),
        ("steps", f"{plan.steps} at lr {config.peak_lr:g}"),
        ("peak memory", f"{plan.peak_mb:,.0f} MB of {plan.available_mb:,.0f} MB"
         + ("" if plan.measured else " (estimated)")),
        ("time", f"{plan.step_s:.2f} s/step, about {plan.total_s / 60:.1f} min"),
    ]  # fmt: skip
    if config.fsdp:  # one process has nothing to shard over: it runs unsharded, and says so
        how = f"FSDP over {n} processes" if world.shard else "off (--fsdp needs --nproc 2 or more)"
        rows.insert(5, ("sharding", how))
    for k, v in rows:
        t.add_row(k, v)
    console.print(t)


def _write_artifact(
    store, out, base, model, tok, config, stats, plan, summary, energy, digest, weights
):
    """The adapter (or full model) as a store artifact whose parent is the base; `weights` is
    its state dict as whole tensors (`distributed.full_state`)."""
    full = config.method == "full"
    meta_config = {**asdict(config), "plan": plan.as_dict(), "data_sha256": digest}
    if config.adapter:
        meta_config["adapter_start"] = config.adapter  # dpo continued this adapter
    with store.create(
        out, kind="model" if full else "adapter", step="tune", parent=base, config=meta_config,
        overwrite=store.exists(out),
    ) as draft:  # fmt: skip
        if full:
            model.save_pretrained(draft.model_dir, state_dict=weights, safe_serialization=True)
            tok.save_pretrained(draft.model_dir)
        else:  # peft picks the adapter's entries of `weights` (prompt/prefix: its encoder's)
            model.save_pretrained(
                draft.path / "adapter", state_dict=weights, safe_serialization=True
            )
            tok.save_pretrained(draft.path / "adapter")
        draft.meta.update(
            data={"path": str(config.data), "sha256": digest, **asdict(stats)},
            metrics={k: v for k, v in summary.items() if k != "history"},
            history=summary["history"],
            energy=energy,
        )
        draft.meta["timings"]["train_s"] = summary["seconds"]
    return store.get(out)
