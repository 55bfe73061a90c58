"""Every way to shrink the default model, measured on one frontier: size, decode speed, accuracy.

    python benchmarks/compress.py [--repeats 3] [--recover 40] [--distill-steps 150]
                                  [--limit N] [--home DIR [--reuse]] [--out path]

Builds, from the embedded SmolLM2-135M-Instruct, in a store of its own (a temporary one
unless --home): int8 and int4 (`lmforge quantize`), 50% 2:4-pruned by Wanda scores plus a
LoRA recovery whose merge keeps the pattern (`lmforge prune --method nm --score wanda
--recover N`), and a half-depth student (15 of 30 layers) distilled on the quickstart chats
(`lmforge distill`). Each variant is scored on the `core` suite (accuracy and calibration;
the same items for all). Decode speed is measured round-robin, one run of each variant per
round, so machine noise hits all of them alike. The timed decodes run after every build.
Writes JSON, a frontier plot (PNG) and prints a table. Targets (issue 5): int8 loses at most
1 point of accuracy and decodes at least 2x faster than fp32; int4 loses at most 3 points;
the distilled student decodes at least 1.6x faster than its teacher.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from common import machine_info, summary, write_json  # benchmarks/common.py
from rich.console import Console
from rich.table import Table

RESULTS = Path(__file__).parent / "results"
TARGETS = {  # name: (variant, figure, bound)
    "int8_accuracy_drop_pts": ("int8", "acc_drop_pts", 1.0),
    "int8_decode_speedup": ("int8", "decode_speedup", 2.0),
    "int4_accuracy_drop_pts": ("int4", "acc_drop_pts", 3.0),
    "student_decode_speedup": ("student-15", "decode_speedup", 1.6),
}


def build_variants(args, store) -> dict[str, str]:
    """variant label -> artifact name, each built (and timed) by the library's own steps."""
    from lmforge.compress.distill import DistillConfig, distill
    from lmforge.compress.prune import PruneConfig, prune
    from lmforge.compress.quantize import QuantizeConfig, quantize
    from lmforge.models.sources import ensure_default

    base = ensure_default(store).name
    recipes = {  # label: (artifact, how to build it)
        "int8": ("bench-int8", lambda out: quantize(base, out, QuantizeConfig(type="int8"))),
        "int4": ("bench-int4", lambda out: quantize(base, out, QuantizeConfig(type="int4"))),
        "2:4+recover": (
            "bench-nm24",
            lambda out: prune(
                base,
                out,
                PruneConfig(method="nm", pattern="2:4", score="wanda", recover=args.recover),
            ),
        ),
        "student-15": (
            "bench-student",
            lambda out: distill(
                base,
                out,
                DistillConfig(
                    student_layers=15,
                    data="quickstart",
                    steps=args.distill_steps,
                    seq_len=256,
                    lr=5e-4,
                ),
            ),
        ),
    }
    console = Console()
    names = {"fp32": base}
    for label, (name, build) in recipes.items():
        if args.reuse and store.exists(name):
            console.print(f"{label}: reusing {name} from the store")
        else:
            console.print(f"{label}: building {name}")
            build(name)
        names[label] = name
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="Decode rounds (median taken).")
    parser.add_argument("--new-tokens", type=int, default=64, help="Tokens per decode run.")
    parser.add_argument("--recover", type=int, default=40, help="LoRA recovery steps after 2:4.")
    parser.add_argument("--distill-steps", type=int, default=150, help="Student training steps.")
    parser.add_argument("--limit", type=int, default=None, help="Items per core task (all).")
    parser.add_argument("--home", help="Store to build in (default: a temporary one).")
    parser.add_argument(
        "--reuse", action="store_true", help="Keep variants already built in --home."
    )
    parser.add_argument("--out", default=str(RESULTS / "compress.json"))
    args = parser.parse_args()

    os.environ["LMFORGE_HOME"] = args.home or tempfile.mkdtemp(prefix="lmforge-compress-")
    import lmforge
    from lmforge.evaluate.metrics.efficiency import decode_speed
    from lmforge.evaluate.report import pareto
    from lmforge.evaluate.runner import EvalConfig, evaluate
    from lmforge.store import Store

    store = Store()
    started = time.perf_counter()
    names = build_variants(args, store)
    build_s = time.perf_counter() - started

    console = Console()
    models = {label: lmforge.load(name) for label, name in names.items()}
    rows: dict[str, dict] = {}
    for label, model in models.items():
        console.print(f"core suite: {label}")
        cfg = EvalConfig(
            suite="core", limit=args.limit, metrics=["accuracy", "calibration"], decode_tokens=0
        )
        doc = evaluate(model, cfg)
        art = store.get(names[label])
        rows[label] = {
            "artifact": names[label],
            "dtype": model.dtype,
            "layers": len(model.hf_model.model.layers),
            "params": sum(p.numel() for p in model.hf_model.parameters()),
            "size_mb": round(art.size_bytes() / 1e6, 1),
            "acc": doc["summary"].get("acc"),
            "ece": doc["summary"].get("ece"),
            "items": sum(t["accuracy"]["n"] for t in doc["tasks"].values()),
            "step_config": art.meta.get("config"),
        }
    speeds: dict[str, list[float]] = {label: [] for label in models}
    for r in range(args.repeats):
        console.print(f"decode round {r + 1}/{args.repeats}")
        for label, model in models.items():
            speeds[label].append(decode_speed(model, args.new_tokens, repeats=1)["decode_tok_s"])
    base = rows["fp32"]
    for label, row in rows.items():
        row["decode_tok_s"] = summary(speeds[label])
        row["decode_speedup"] = round(
            statistics.median(speeds[label]) / statistics.median(speeds["fp32"]), 3
        )
        row["acc_drop_pts"] = round(100 * (base["acc"] - row["acc"]), 2)
        row["size_ratio"] = round(base["size_mb"] / row["size_mb"], 2)
    docs = [
        {
            "label": label,
            "summary": {"acc": row["acc"]},
            "decode": {"decode_tok_s": row["decode_tok_s"]["median"]},
            "size_mb": row["size_mb"],
        }
        for label, row in rows.items()
    ]
    for row, best in zip(rows.values(), pareto(docs), strict=True):
        row["pareto"] = best
    targets = {}
    for name, (label, figure, bound) in TARGETS.items():
        value = rows[label][figure]
        met = value <= bound if figure == "acc_drop_pts" else value >= bound
        targets[name] = {"value": value, "bound": bound, "met": met}

    out = Path(args.out)
    plot = out.with_suffix(".png")
    frontier_plot(rows, plot)
    write_json(
        out,
        {
            "benchmark": "compress",
            "machine": machine_info(),
            "model": "SmolLM2-135M-Instruct (embedded default), fp32 as imported",
            "suite": "core",
            "limit": args.limit,
            "new_tokens": args.new_tokens,
            "repeats": args.repeats,
            "build_s": round(build_s, 1),
            "variants": rows,
            "targets": targets,
            "plot": plot.name,
        },
    )
    table = Table(title="shrinking SmolLM2-135M (core suite; * = Pareto-optimal)")
    for col in ("variant", "size MB", "x smaller", "decode tok/s", "x faster", "acc", "drop pts"):
        table.add_column(col, justify="right")
    for label, row in rows.items():
        table.add_row(
            label + (" *" if row["pareto"] else ""),
            f"{row['size_mb']:.0f}",
            f"{row['size_ratio']:.2f}",
            f"{row['decode_tok_s']['median']:.1f}",
            f"{row['decode_speedup']:.2f}",
            f"{row['acc']:.4f}",
            f"{row['acc_drop_pts']:+.2f}",
        )
    console.print(table)
    for name, t in targets.items():
        console.print(
            f"{name}: {t['value']} (bound {t['bound']}) {'met' if t['met'] else 'NOT met'}"
        )
    console.print(f"wrote {out} and {plot}")


def frontier_plot(rows: dict[str, dict], path: Path) -> None:
    """Accuracy against decode tok/s, marker area by size on disk; Pareto-optimal as stars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, row in rows.items():
        x, y = row["decode_tok_s"]["median"], row["acc"]
        ax.scatter([x], [y], s=row["size_mb"], marker="*" if row["pareto"] else "o", alpha=0.7)
        ax.annotate(
            f"{label} ({row['size_mb']:.0f} MB)",
            (x, y),
            xytext=(6, 4),
            textcoords="offset points",
            fontsize=8,
        )
    ax.set_xlabel("decode tok/s (batch 1, 2 CPU cores)")
    ax.set_ylabel("core accuracy")
    ax.set_title("SmolLM2-135M variants: accuracy against speed (area = size)")
    ax.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


if __name__ == "__main__":
    main()
