"""Single-stream decode speed and time to first token: lmforge vs its anchors, side by side.

    python benchmarks/decode.py [--repeats 3] [--new-tokens 128] [--engines a,b] [--out path]

Every engine generates exactly --new-tokens tokens (greedy, no early stop) from the same
chat prompt on the embedded SmolLM2-135M-Instruct. Engines run round-robin after one
warm-up each, so machine noise hits all of them alike. Writes JSON (see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from collections.abc import Callable, Iterator
from importlib import metadata
from itertools import islice
from pathlib import Path

import torch
import transformers
from common import machine_info as common_machine_info
from common import summary, write_json  # benchmarks/common.py (the script folder is on sys.path)
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from transformers.generation.streamers import BaseStreamer

import lmforge
from lmforge.engine.generate import stream_batch
from lmforge.engine.params import SamplingParams
from lmforge.models.default import default_gguf_path
from lmforge.models.model import Model

Runner = Callable[[], list[float]]
"""One generation of n tokens; returns [start time, time of token 1, ..., time of token n]."""

HF, LLAMA = "hf_generate_fp32", "llama_cpp_q4_1"
ENGINES = [
    "lmforge_fp32",
    "lmforge_bf16",
    "lmforge_int8",
    "lmforge_int4",
    "lmforge_fp32_compiled",
    "lmforge_int8_compiled",
    HF,
    LLAMA,
]
RATIOS = [
    ("lmforge_fp32", HF),
    ("lmforge_fp32_compiled", HF),
    ("lmforge_bf16", HF),
    ("lmforge_int8", LLAMA),
    ("lmforge_int8_compiled", LLAMA),
    ("lmforge_int8", HF),
]
TARGETS = {
    "fp32_vs_generate": ("lmforge_fp32", HF, 2.0),
    "int8_vs_llama_cpp": ("lmforge_int8", LLAMA, 1.0),
    "int8_compiled_vs_llama_cpp": ("lmforge_int8_compiled", LLAMA, 1.0),
}
PROMPT = "Explain how a refrigerator keeps food cold, step by step."
INSTALL_HINT = "pip install 'lmforge[bench]'"
console = Console()


def clock(steps: Iterator, n: int) -> list[float]:
    """Pull n items from a lazy token iterator; [start, time of token 1, ..., of token n]."""
    start = time.perf_counter()
    return [start, *(time.perf_counter() for _ in islice(steps, n))]


def lmforge_runner(model: Model, prompt: list[int], n: int) -> Runner:
    params = SamplingParams(max_tokens=n)

    def run() -> list[float]:  # an empty EOS set: never stop before n tokens
        return clock(stream_batch(model.decoder, model.tokenizer, [prompt], params, frozenset()), n)

    return run


class _Clock(BaseStreamer):
    """A generate() streamer that notes when each put() comes; the first one is the prompt."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def put(self, value: torch.Tensor) -> None:
        self.times.append(time.perf_counter())

    def end(self) -> None:
        pass


def hf_generate_runner(hf: transformers.PreTrainedModel, prompt: list[int], n: int) -> Runner:
    ids = torch.tensor([prompt])
    kwargs = dict(do_sample=False, min_new_tokens=n, max_new_tokens=n)
    kwargs |= dict(attention_mask=torch.ones_like(ids), pad_token_id=hf.config.eos_token_id)

    def run() -> list[float]:
        streamer, start = _Clock(), time.perf_counter()
        out = hf.generate(ids, streamer=streamer, **kwargs)
        assert out.shape[1] - ids.shape[1] == n, "generate() did not make exactly n tokens"
        return [start, *streamer.times[1:]]

    return run


def llama_cpp_runner(prompt: list[int], n: int) -> Runner:
    from llama_cpp import Llama

    threads = torch.get_num_threads()
    path = str(default_gguf_path())
    llm = Llama(path, n_ctx=512, n_threads=threads, n_threads_batch=threads, verbose=False)

    def run() -> list[float]:
        llm.reset()  # forget the last run's KV cache so the prompt is prefilled again
        return clock(llm.generate(prompt, top_k=1, temp=0.0, repeat_penalty=1.0), n)

    return run


def make_runner(engine: str, base: Model, prompt: list[int], n: int) -> Runner:
    """Load one engine; `base` is the fp32 model, shared where an engine can use it."""
    if engine.startswith("lmforge_"):
        dtype = engine.removeprefix("lmforge_").removesuffix("_compiled")
        if engine.endswith("_compiled"):  # compiles during the warm-up run
            model = lmforge.load(None, dtype=dtype, compile=True)
        else:
            model = base if dtype == base.dtype else lmforge.load(None, dtype=dtype)
        return lmforge_runner(model, prompt, n)
    if engine == HF:
        return hf_generate_runner(base.hf_model, prompt, n)
    return llama_cpp_runner(prompt, n)


def machine_info() -> dict:
    has_llama = importlib.util.find_spec("llama_cpp") is not None
    return common_machine_info(
        llama_cpp=metadata.version("llama-cpp-python") if has_llama else None
    )


def measure(runners: dict[str, Runner], repeats: int, n: int) -> dict[str, dict]:
    """One warm-up, then `repeats` rounds over all engines in turn; per-engine summaries."""
    timings: dict[str, list[tuple[float, float]]] = {e: [] for e in runners}
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("decoding", total=len(runners) * (repeats + 1))
        for rep in range(repeats + 1):  # rep 0 is the warm-up
            for engine, run in runners.items():
                progress.update(task, description=f"{engine} run {rep}/{repeats}")
                times = run()
                assert len(times) == n + 1, f"{engine} made {len(times) - 1} tokens, not {n}"
                if rep:  # (TTFT, time for the n - 1 tokens after the first)
                    timings[engine].append((times[1] - times[0], times[-1] - times[1]))
                progress.advance(task)
    return {
        engine: {
            "decode_tok_s": summary([(n - 1) / d for _, d in runs]),
            "ttft_ms": summary([t * 1000 for t, _ in runs]),
        }
        for engine, runs in timings.items()
    }


def median_ratio(results: dict[str, dict], a: str, b: str) -> float | None:
    """Median decode tok/s of engine a over engine b; None if either did not run."""
    if "decode_tok_s" not in results.get(a, {}) or "decode_tok_s" not in results.get(b, {}):
        return None
    return round(results[a]["decode_tok_s"]["median"] / results[b]["decode_tok_s"]["median"], 3)


def print_report(engines: list[str], results: dict, ratios: dict, met: dict, title: str) -> None:
    table = Table(title=f"decode, {title}")
    table.add_column("engine")
    table.add_column("decode tok/s median (min)", justify="right")
    table.add_column("TTFT ms median", justify="right")
    for engine in engines:
        tok_s, ttft = results[engine].get("decode_tok_s"), results[engine].get("ttft_ms")
        if tok_s is None:
            table.add_row(engine, "skipped", "-")
            continue
        table.add_row(
            engine, f"{tok_s['median']:.1f} ({tok_s['min']:.1f})", f"{ttft['median']:.1f}"
        )
    console.print(table)
    for name, ratio in ratios.items():
        console.print(f"{name}: " + ("n/a" if ratio is None else f"{ratio:.2f}x"), markup=False)
    for name, (a, b, target) in TARGETS.items():
        state = {True: "met", False: "NOT met", None: "n/a"}[met[name]]
        console.print(f"target {name} ({a}/{b} >= {target}): {state}", markup=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per engine")
    parser.add_argument("--new-tokens", type=int, default=128, help="tokens per run (>= 2)")
    parser.add_argument("--engines", default=",".join(ENGINES), help="comma list of engines")
    default_out = Path(__file__).parent / "results" / "decode.json"
    parser.add_argument("--out", type=Path, default=default_out, help="where to write the JSON")
    args = parser.parse_args()
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    if unknown := sorted(set(engines) - set(ENGINES)):
        parser.error(f"unknown engine(s) {', '.join(unknown)}; choose from {', '.join(ENGINES)}")
    if args.new_tokens < 2 or args.repeats < 1:
        parser.error("--new-tokens must be >= 2 and --repeats >= 1")
    n = args.new_tokens

    results: dict[str, dict] = {}
    if LLAMA in engines and importlib.util.find_spec("llama_cpp") is None:
        console.print(f"llama_cpp is not installed, skipping it; {INSTALL_HINT}", markup=False)
        results[LLAMA] = {"skipped": f"llama_cpp not installed ({INSTALL_HINT})"}
    with console.status("loading engines"):
        base = lmforge.load(None, dtype="fp32")
        prompt = base.chat_prompt([{"role": "user", "content": PROMPT}])
        runners = {e: make_runner(e, base, prompt, n) for e in engines if e not in results}

    results |= measure(runners, args.repeats, n)
    results = {e: results[e] for e in engines}
    ratios = {f"{a}/{b}": median_ratio(results, a, b) for a, b in RATIOS}
    met = {
        name: None if (r := median_ratio(results, a, b)) is None else r >= target
        for name, (a, b, target) in TARGETS.items()
    }
    write_json(
        args.out,
        {
            "benchmark": "decode",
            "machine": machine_info(),
            "model": "SmolLM2-135M-Instruct (default GGUF, Q4_1)",
            "prompt_tokens": len(prompt),
            "new_tokens": n,
            "repeats": args.repeats,
            "engines": results,
            "ratios": ratios,
            "targets": {name: target for name, (_, _, target) in TARGETS.items()},
            "targets_met": met,
        },
    )

    print_report(engines, results, ratios, met, f"{len(prompt)}-token prompt, {n} new tokens")
    console.print(f"wrote {args.out}", markup=False)


if __name__ == "__main__":
    main()
