"""The `lmforge` command: one thin sub-command per step; all logic lives in the library."""

from __future__ import annotations

import itertools
import json
import sys
import time
from dataclasses import MISSING, fields

import click

from lmforge.compress.distill import DistillConfig
from lmforge.compress.prune_config import PruneConfig
from lmforge.compress.quantize import QuantizeConfig
from lmforge.engine.params import SamplingParams
from lmforge.errors import LmforgeError
from lmforge.explain.config import ExplainConfig
from lmforge.tune.config import TuneConfig

DTYPE = click.Choice(["fp32", "bf16", "int8", "int4"])


def sampling_options(command):
    """Add one flag per `SamplingParams` field (the dataclass is the only schema)."""
    for f in reversed(fields(SamplingParams)):
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not MISSING else "none"
        help_text = f"{f.metadata.get('help', '')} [default: {default}]"
        if f.name == "stop":
            command = click.option(flag, multiple=True, help=f.metadata.get("help"))(command)
        else:
            kind = int if f.name in ("max_tokens", "top_k", "seed") else float
            command = click.option(flag, type=kind, default=None, help=help_text)(command)
    return command


def inference_options(command):
    """--dtype, --compile, --stats and the sampling flags, shared by chat and generate."""
    command = sampling_options(command)
    command = click.option(
        "--stats", is_flag=True, help="Print tokens/s and time to first token to stderr."
    )(command)
    command = click.option(
        "--compile",
        "compile_",
        is_flag=True,
        help="Compile the decode step (fp32/int8/int4; ~1 min once, then faster).",
    )(command)
    return click.option(
        "--dtype",
        type=DTYPE,
        help="Weight type for inference [default: fp32, or a quantized model's own type].",
    )(command)


def _sampling(kwargs: dict) -> dict:
    """Pop the sampling flags out of a command's kwargs (None = use the default)."""
    out = {}
    for f in fields(SamplingParams):
        value = kwargs.pop(f.name, None)
        if f.name == "stop":
            value = list(value) or None
        if value is not None:
            out[f.name] = value
    SamplingParams.from_kwargs(**out)  # fail on bad values before loading the model
    return out


def _load(model: str | None, dtype: str, compile: bool = False):
    from lmforge.models.loader import load

    return load(model, dtype=dtype, compile=compile)


def config_options(config_class):
    """One flag per field of a step's config dataclass (the only schema); None = not given.

    Booleans get --x/--no-x, lists a comma-separated string (the config splits it).
    """

    def add(command):
        for f in reversed(fields(config_class)):
            flag = "--" + f.name.replace("_", "-")
            kind = str(f.type)
            default = f.default if f.default is not MISSING else None
            help_text = f.metadata.get("help", "")
            if default is not None and not kind.startswith("bool"):
                help_text += f" [default: {default}]"
            if kind.startswith("bool"):
                flag = f"{flag}/--no-{f.name.replace('_', '-')}"
                option = click.option(flag, default=None, help=help_text)
            elif kind.startswith("list"):
                option = click.option(flag, default=None, help=help_text + " Comma-separated.")
            else:
                t = int if kind.startswith("int") else float if kind.startswith("float") else str
                option = click.option(flag, type=t, default=None, help=help_text)
            command = option(command)
        return command

    return add


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="lmforge", message="lmforge %(version)s")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
def cli(debug: bool) -> None:
    """lmforge: load, adapt, shrink, prove, explain, serve and document open language models."""


@cli.command()
@click.argument("model", required=False)
@click.option("--prompt", "-p", help="Ask one question, print the answer and exit.")
@click.option("--system", "-s", help="System prompt for the conversation.")
@click.option(
    "--image",
    "images",
    multiple=True,
    help="An image to ask about (repeatable); a text-only model gets its text (OCR) and layout.",
)
@click.option("--audio", help="A WAV file with the spoken question (offline recogniser).")
@click.option("--asr-model", help="A local Vosk or PocketSphinx model folder for --audio.")
@click.option("--speak", "speak_to", help="Also write the answer as speech to this WAV file.")
@inference_options
def chat(
    model, dtype, prompt, system, stats, compile_, images, audio, asr_model, speak_to, **kwargs
):
    """Chat with MODEL (a store name or a path; default: the embedded SmolLM2-135M-Instruct).

    In the interactive chat: /reset clears the conversation, /system TEXT sets the system
    prompt, /exit quits. --image, --audio and --speak answer one question and exit.
    """
    from lmforge.chat import ChatSession

    sampling = _sampling(kwargs)
    if (images or speak_to) and prompt is None and not audio:
        raise click.UsageError("--image and --speak answer one question: give --prompt or --audio")
    if speak_to:
        from lmforge.audio.tts import check_available

        check_available()  # fail before the model loads, not after it answers
    if audio:
        prompt = _heard(audio, asr_model, prompt)
    if images:
        from lmforge.models.images import load_image

        images = [load_image(path) for path in images]  # bad files fail before the model loads
    m = _load(model, dtype, compile_)
    session = ChatSession(m, system=system, sampling=sampling)
    if images:
        deltas = _image_reply(m, images, prompt, system, sampling, stats)
    elif prompt is not None:
        deltas = session.send(prompt)
    else:
        session.repl(show_stats=stats)
        return
    answer = _stream_out(deltas, stats)
    if speak_to:
        from lmforge.audio.tts import speak

        click.echo(f"answer spoken to {speak(answer, speak_to)}", err=True)


def _heard(audio: str, asr_model: str | None, prompt: str | None) -> str:
    """The spoken question as text (said on stderr); --prompt, if given, goes before it."""
    from lmforge.audio.asr import transcribe

    heard = transcribe(audio, model=asr_model)
    click.echo(f"heard ({heard.engine}, {heard.seconds:.1f} s): {heard.text}", err=True)
    return f"{prompt}\n{heard.text}" if prompt else heard.text


def _image_reply(m, images, prompt, system, sampling, stats):
    """Stream the answer about `images`; one stderr line says how the images were read."""
    from lmforge.vision.ask import chat_with_images, image_summary

    deltas, meta = chat_with_images(m, images, prompt, system=system, stream=True, **sampling)
    click.echo(image_summary(meta), err=True)
    if stats:
        click.echo(json.dumps(meta), err=True)
    return deltas


@cli.command()
@click.argument("model", required=False)
@click.option("--prompt", "-p", required=True, help="Text to continue.")
@inference_options
def generate(model, prompt, dtype, stats, compile_, **kwargs):
    """Raw completion of --prompt by MODEL (no chat template), streamed to stdout."""
    sampling = _sampling(kwargs)
    m = _load(model, dtype, compile_)
    _stream_out(m.stream(prompt, **sampling), stats)


def _stream_out(deltas, stats: bool) -> str:
    """Write the deltas to stdout as they come; return the whole text."""
    start = time.perf_counter()
    first, parts = None, []
    for text in deltas:
        if first is None:
            first = time.perf_counter()
        parts.append(text)
        sys.stdout.write(text)
        sys.stdout.flush()
    sys.stdout.write("\n")
    n = len(parts)
    if stats and first is not None:
        took = time.perf_counter() - first
        rate = f"{(n - 1) / took:.1f} chunks/s" if n > 1 and took > 0 else "-"
        click.echo(f"[ttft {1e3 * (first - start):.0f} ms, {rate}]", err=True)
    return "".join(parts)


@cli.command("serve")
@click.argument("model", required=False)
@click.option("--host", help="Address to listen on [default: 127.0.0.1].")
@click.option("--port", type=int, help="Port to listen on [default: 8000].")
@click.option("--max-batch", type=int, help="Requests decoded together [default: 16].")
@click.option(
    "--max-queue", type=int, help="Requests that may wait for a row; more get 429 [default: 64]."
)
@click.option(
    "--context", type=int, help="Most prompt + completion tokens [default: the model's context]."
)
@click.option(
    "--api-key",
    "api_keys",
    multiple=True,
    help="A key clients must send (Authorization: Bearer KEY); repeatable [default: none].",
)
@click.option(
    "--api-keys-file",
    type=click.Path(exists=True, dir_okay=False),
    help="A file of keys, one a line (or sha256:HEX digests).",
)
@click.option(
    "--admin-key",
    "admin_keys",
    multiple=True,
    help="A key for /admin/* (adapter load, unload, swap); client keys then get 403 there.",
)
@click.option("--rate-limit", type=int, help="Requests per minute per key; more get 429.")
@click.option(
    "--max-tokens-limit",
    type=int,
    help="Most tokens one answer may have (also the default when a request sets none); "
    "0: up to the context [default: 2048].",
)
@click.option(
    "--allowed-host",
    "allowed_hosts",
    multiple=True,
    help="A host name clients may reach the server by, beyond the loopback names a loopback "
    "server answers to (repeatable; '*': any).",
)
@click.option(
    "--cors-origin",
    "cors_origins",
    multiple=True,
    help="An origin browsers may call from (CORS); repeatable [default: none].",
)
@click.option(
    "--guard",
    help="Check prompts and answers: off|flag|redact|block for all, or per check, e.g. "
    "injection=block,pii=redact,toxicity=flag [default: off].",
)
@click.option(
    "--prompt-cache-mb",
    type=float,
    help="Memory for recent prompts' keys and values, reused by prompts that open the same way; "
    "0: off [default: 64].",
)
@click.option(
    "--embeddings", is_flag=True, default=None, help="Also serve POST /v1/embeddings (MiniLM)."
)
@click.option(
    "--image-ocr",
    is_flag=True,
    default=None,
    help="Read images sent to a text-only model as text (OCR); off: they get 400.",
)
@click.option(
    "--dtype",
    type=DTYPE,
    help="Weight type for inference [default: fp32, or a quantized model's own type].",
)
@click.option(
    "--adapter",
    "adapters",
    multiple=True,
    help="A LoRA adapter artifact of MODEL to offer as `MODEL:NAME` (repeatable).",
)
@click.option(
    "--compile",
    "compile_",
    is_flag=True,
    help="Compile the single-row decode step (fp32/int8/int4; ~1 min once, then faster).",
)
def serve_cmd(model, dtype, api_keys, api_keys_file, admin_keys, adapters, compile_, **flags):
    """Serve MODEL (default: the embedded model) over an OpenAI-compatible HTTP API.

    POST /v1/chat/completions and /v1/completions (SSE with "stream": true), GET /v1/models,
    GET /health. Requests share one continuously batched decode loop. With API keys set,
    every route but /, /health and /metrics needs one.
    """
    from lmforge.serve.app import serve
    from lmforge.serve.auth import read_keys
    from lmforge.serve.config import ServeConfig

    flags["api_key_hashes"] = read_keys(api_keys, [api_keys_file] if api_keys_file else [])
    flags["admin_key_hashes"] = read_keys(admin_keys)
    config = ServeConfig(**{k: v for k, v in flags.items() if v is not None})  # check, then load
    serve(_load(model, dtype, compile_), config, adapters)


@cli.command("eval")
@click.argument("models", nargs=-1, required=True)
@click.option(
    "--suite",
    default="core",
    show_default=True,
    help="Bundled suite (core, bias), a task YAML or a folder.",
)
@click.option("--limit", type=int, help="At most this many items per task.")
@click.option("--metrics", help="Comma-separated metric families (default: the tasks' own).")
@click.option(
    "--batch-size", type=int, default=16, show_default=True, help="Requests scored together."
)
@click.option(
    "--chat-template", is_flag=True, help="Wrap each prompt in the model's chat template."
)
@click.option(
    "--dtype",
    type=DTYPE,
    help="Weight type for inference [default: fp32, or a quantized model's own type].",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed for perturbations and intervals."
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    help="Result JSON path (default: the artifact's evals/).",
)
@click.option(
    "--html", type=click.Path(dir_okay=False), help="compare: write an HTML page with plots here."
)
@click.option(
    "--endpoint", help="OpenAI-compatible base URL; MODEL is then the served model's name."
)
def eval_cmd(
    models, suite, limit, metrics, batch_size, chat_template, dtype, seed, out, html, endpoint
):
    """Evaluate MODEL on a suite; or `lmforge eval compare A B ...` to set results side by side.

    Writes evals/<suite>.json into the model's artifact (per-item records with the exact
    prompts, aggregates per task and metric family, versions, seed) and prints a table.
    """
    from lmforge.evaluate import report

    if models[0] == "compare" and len(models) > 1:  # alone, "compare" is an artifact's name
        docs = report.load_results(models[1:], suite)
        report.print_compare(docs)
        if html:
            click.echo(f"wrote {report.write_html(docs, html)}")
        return
    if len(models) != 1:
        raise click.UsageError("give one MODEL, or `compare A B ...`")
    from lmforge.evaluate.runner import EvalConfig, evaluate, result_path, write_result

    config = EvalConfig(
        suite=suite,
        limit=limit,
        metrics=[m.strip() for m in metrics.split(",") if m.strip()] if metrics else None,
        batch_size=batch_size,
        chat_template=chat_template,
        seed=seed,
        dtype=dtype,
        endpoint=endpoint,
        endpoint_model=models[0],
    )
    from lmforge.vision.clip import is_clip_folder

    if not endpoint and is_clip_folder(models[0]):  # a CLIP model: a zero-shot image task
        _zero_shot_eval(models[0], suite, "a photo of a {}.", out)
        return
    if endpoint:
        if not out:
            raise click.UsageError("with --endpoint, give --out FILE for the result")
        model = None  # generate tasks go to the endpoint; nothing loads here
    else:
        model = _load(models[0], dtype)
    target = result_path(model, suite, out)  # fail before the work if there is nowhere to write
    doc = evaluate(model, config)
    report.print_result(doc)
    click.echo(f"wrote {write_result(doc, target)}")


@cli.command()
@click.argument("model", required=False)
@click.option("--config", "config_file", help="YAML file with any of the flags below as keys.")
@click.option("--resume", is_flag=True, help="Continue from the run's last checkpoint.")
@click.option("--nproc", type=int, default=1, help="Processes (DDP through torchrun).")
@config_options(TuneConfig)
def tune(model, config_file, resume, nproc, **flags):
    """Fine-tune MODEL (default: the embedded model) with LoRA, DoRA, IA3, prompt, prefix or full.

    --method dpo tunes a LoRA on preference pairs ({"prompt", "chosen", "rejected"} JSONL),
    from a fresh LoRA or from --adapter NAME, with --beta setting the pull to the reference.
    """
    import os

    from lmforge.tune.config import load_config
    from lmforge.tune.distributed import launch
    from lmforge.tune.trainer import tune as run_tune

    if flags.get("target_modules"):
        flags["target_modules"] = [m.strip() for m in flags["target_modules"].split(",")]
    config = load_config(config_file, **flags)  # bad flags fail here, before any launch
    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        argv = sys.argv[1:]
        keep = [
            a
            for i, a in enumerate(argv)
            if not a.startswith("--nproc") and argv[i - 1] != "--nproc"
        ]
        sys.exit(launch(nproc, keep))
    run_tune(model, config, resume=resume)


@cli.command()
@click.argument("adapter")
@click.option("--out", required=True, help="Name of the merged model artifact.")
def merge(adapter, out):
    """Fold a LoRA/DoRA/IA3 adapter into its base: a full model artifact."""
    from lmforge.tune.merge import merge as run_merge

    art = run_merge(adapter, out)
    click.echo(f"wrote {art.name} ({art.size_bytes() / 2**20:.0f} MB)")


def eval_option(command):
    return click.option(
        "--eval",
        "eval_suite",
        help="Evaluate the result on this suite (core, ...) into its evals/ folder.",
    )(command)


def _evaluate_into(name: str, suite: str | None) -> None:
    if suite:
        from lmforge.evaluate.report import print_result
        from lmforge.evaluate.runner import evaluate_artifact

        doc, path = evaluate_artifact(name, suite)
        print_result(doc)
        click.echo(f"wrote {path}")


@cli.command()
@click.option("--teacher", help="Teacher: a store name or path [default: the embedded model].")
@click.option("--out", required=True, help="Name of the student model artifact.")
@config_options(DistillConfig)
@eval_option
def distill(teacher, out, eval_suite, **flags):
    """Distill a teacher into a smaller student trained on its logits (KL) plus cross-entropy.

    The student is cut from the teacher (--student-layers K: its embeddings, norms, LM head
    and K evenly spaced layers) or given (--student CONFIG_OR_FOLDER, same tokenizer). It
    trains on --data (a file, or quickstart) or on the teacher's answers to --prompts FILE.
    """
    from lmforge.compress.distill import distill as run_distill
    from lmforge.compress.distill import print_summary

    config = DistillConfig.from_dict({k: v for k, v in flags.items() if v is not None})
    print_summary(run_distill(teacher, out, config))
    _evaluate_into(out, eval_suite)


@cli.command()
@click.argument("model", required=False)
@click.option("--out", required=True, help="Name of the pruned model artifact.")
@config_options(PruneConfig)
@eval_option
def prune(model, out, eval_suite, **flags):
    """Prune MODEL (default: the embedded model): zero weights or remove heads/channels/layers.

    magnitude, wanda and nm (N:M, e.g. --pattern 2:4) zero weights in place; heads, channels
    and layers remove the least important ones for a smaller, faster model. --recover N
    runs N LoRA steps afterwards; the pruned weights stay zero.
    """
    from lmforge.compress.prune import print_report
    from lmforge.compress.prune import prune as run_prune

    config = PruneConfig.from_dict({k: v for k, v in flags.items() if v is not None})
    print_report(run_prune(model, out, config))
    _evaluate_into(out, eval_suite)


@cli.command()
@click.argument("model", required=False)
@click.option("--out", required=True, help="Name of the quantized model artifact.")
@click.option("--force", is_flag=True, help="Replace an artifact of that name.")
@config_options(QuantizeConfig)
@eval_option
def quantize(model, out, force, eval_suite, **flags):
    """Quantize MODEL's weights (default: the embedded model) to int8 or int4.

    The artifact stores the integers and scales the engine's kernels run (int8: one scale
    per output channel; int4: a scale and zero per --group-size inputs); it loads with
    `lmforge chat NAME` and runs at its type by default.
    """
    from lmforge.compress.quantize import print_report
    from lmforge.compress.quantize import quantize as run_quantize

    config = QuantizeConfig(**{k: v for k, v in flags.items() if v is not None})
    print_report(run_quantize(model, out, config, overwrite=force))
    _evaluate_into(out, eval_suite)


@cli.command("export")
@click.argument("model", required=False)
@click.option(
    "--out",
    required=True,
    type=click.Path(),
    help="A .gguf file (or a folder to put it in); for hf, the folder.",
)
@click.option(
    "--format",
    "format_",
    type=click.Choice(["gguf", "hf"]),
    default="gguf",
    show_default=True,
    help="gguf: one file for llama.cpp / Ollama; hf: a safetensors folder.",
)
@click.option(
    "--type",
    "type_",
    type=click.Choice(["f32", "f16", "q8_0", "q4_0"]),
    help="Weight type [default: f16 for gguf, f32 for hf; hf takes f32 or f16].",
)
@click.option("--force", is_flag=True, help="Replace an existing file or folder at --out.")
@click.option("--no-verify", is_flag=True, help="Skip reloading and comparing the export.")
def export_cmd(model, out, format_, type_, force, no_verify):
    """Export MODEL (default: the embedded model) as GGUF or a HF folder, verified on reload.

    GGUF also gets an Ollama Modelfile beside it. The export is reloaded and its next-token
    distributions compared with MODEL's before it is put in place.
    """
    from lmforge.compress.export import export, print_report

    report = export(model, out, format_, type_, overwrite=force, verify=not no_verify)
    print_report(report)


@cli.group()
def models() -> None:
    """List, inspect, import and remove models in the store."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def models_list(as_json: bool) -> None:
    """List the artifacts in the store."""
    from rich.console import Console
    from rich.table import Table

    from lmforge.store import Store

    store = Store()
    arts = store.list()
    if as_json:
        click.echo(json.dumps([a.meta for a in arts], indent=2, default=str))
        return
    table = Table(title=f"lmforge store: {store.root}")
    for col in ("name", "kind", "step", "parent", "params", "size", "created"):
        table.add_column(col)
    for a in arts:
        params = a.meta.get("model", {}).get("parameters")
        table.add_row(
            a.name,
            a.kind,
            a.step or "",
            a.parent or "",
            f"{params / 1e6:.0f}M" if params else "",
            f"{a.size_bytes() / 1e6:.0f} MB",
            a.meta.get("created", ""),
        )
    Console().print(table)


@models.command("show")
@click.argument("name")
def models_show(name: str) -> None:
    """Print an artifact's artifact.json."""
    from lmforge.store import Store

    click.echo(json.dumps(Store().get(name).meta, indent=2, sort_keys=True, default=str))


@models.command("import")
@click.argument("path")
@click.option("--name", required=True, help="Name for the new artifact.")
@click.option("--force", is_flag=True, help="Replace an existing artifact of that name.")
def models_import(path: str, name: str, force: bool) -> None:
    """Convert PATH (a Hugging Face folder or a .gguf file) into a store artifact."""
    from lmforge.models.convert import import_model

    art = import_model(path, name, overwrite=force)
    click.echo(f"imported {art.name} -> {art.path}")


@models.command("rm")
@click.argument("name")
def models_rm(name: str) -> None:
    """Remove an artifact from the store."""
    from lmforge.store import Store

    Store().remove(name)
    click.echo(f"removed {name}")


@cli.group()
def guard() -> None:
    """Check text for prompt injection, personal data and toxicity; measure the checks."""


@guard.command("check")
@click.argument("text")
@click.option(
    "--policy",
    default="injection=block,pii=redact,toxicity=flag",
    show_default=True,
    help="An action (off|flag|redact|block) for all checks, or per check: injection=,pii=,toxicity=.",
)
@click.option("--output", "as_output", is_flag=True, help="Check TEXT as a model's answer.")
@click.option("--json", "as_json", is_flag=True, help="Print the decision as JSON.")
def guard_check(text: str, policy: str, as_output: bool, as_json: bool) -> None:
    """Print the guard's decision on TEXT (a prompt, or with --output an answer)."""
    from lmforge.guard import Guard
    from lmforge.guard.cli_output import print_decision

    guard_ = Guard(policy)
    decision = guard_.check_output(text) if as_output else guard_.check_input(text)
    print_decision(decision, guard_.policy, as_json)


@guard.command("eval")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def guard_eval(as_json: bool) -> None:
    """Measure each detector (recall, false-positive rate, precision) on the held-out set."""
    from lmforge.guard.evaluation import evaluate, print_report

    result = evaluate()
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        print_report(result)


@cli.group()
def feedback() -> None:
    """Turn the web chat's feedback (thumbs, edited answers) into training data."""


@feedback.command("export")
@click.option(
    "--format",
    "format_",
    type=click.Choice(["dpo", "sft"]),
    required=True,
    help="dpo: prompt/chosen/rejected pairs (`lmforge tune --method dpo`); sft: chat messages.",
)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="JSONL file to write.")
@click.option(
    "--db", type=click.Path(dir_okay=False), help="Store [default: $LMFORGE_HOME/serve.db]."
)
def feedback_export(format_: str, out: str, db: str | None) -> None:
    """Write the feedback stored by `lmforge serve`'s web chat as JSONL that `lmforge tune` reads."""
    from lmforge.errors import NotFoundError
    from lmforge.serve.feedback import FeedbackStore

    store = FeedbackStore(db)
    if not store.path.is_file():
        raise NotFoundError(
            f"no feedback store at {store.path}",
            "chat at `lmforge serve`'s page first, or pass --db",
        )
    count = store.export(format_, out)
    click.echo(f"wrote {count} {format_} record(s) to {out}")


@cli.command("card")
@click.argument("model")
@click.option("--print", "print_", is_flag=True, help="Print the card instead of writing it.")
def card_cmd(model, print_):
    """Write MODEL's model card (card.md in its artifact folder) from its recorded facts."""
    from lmforge.report import render_card, write_card

    click.echo(render_card(model) if print_ else f"wrote {write_card(model)}")


@cli.command("compliance")
@click.argument("model")
@click.option(
    "--role",
    type=click.Choice(["provider", "deployer"]),
    default="provider",
    show_default=True,
    help="provider: Art. 53 / Annex XI and XII; deployer: risk questionnaire and Annex IV.",
)
@click.option("--use-case", help="What the system will be used for (matched to Annex III).")
@click.option("--print", "print_", is_flag=True, help="Also print the Markdown.")
def compliance_cmd(model, role, use_case, print_):
    """Write EU AI Act documentation for MODEL into compliance/<role>.md and .json."""
    from lmforge.report import write_compliance

    paths = write_compliance(model, role=role, use_case=use_case)
    if print_:
        click.echo(paths["markdown"].read_text())
    for path in paths.values():
        click.echo(f"wrote {path}")


@cli.command("energy")
@click.argument("model")
@click.option(
    "--grid-intensity",
    type=float,
    help="Grid carbon intensity in g CO2e/kWh [default: 475, IEA world average].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the ledger as JSON.")
def energy_cmd(model, grid_intensity, as_json):
    """Energy of every step of MODEL's lineage and its evaluations, with emissions."""
    from lmforge.report.energy import WORLD_AVERAGE_G_PER_KWH, energy_ledger, print_ledger

    grid = WORLD_AVERAGE_G_PER_KWH if grid_intensity is None else grid_intensity
    ledger = energy_ledger(model, grid_g_per_kwh=grid)
    if as_json:
        click.echo(json.dumps(ledger, indent=2))
    else:
        print_ledger(ledger)


@cli.command("report")
@click.argument("targets", nargs=-1, required=True, metavar="RUN_OR_MODELS...")
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    help="Folder [default: $LMFORGE_HOME/reports/<run or models>/].",
)
@click.option(
    "--explain", "explain_prompt", help="Explain the last model's answer to this prompt too."
)
@click.option(
    "--pdf/--no-pdf", default=None, help="Print a PDF too [default: when chromium is installed]."
)
@click.option(
    "--guard/--no-guard",
    default=True,
    show_default=True,
    help="Measure the guard's detectors when no stored evaluation matches.",
)
def report_cmd(targets, out, explain_prompt, pdf, guard):
    """The comprehensive report (Markdown, self-contained HTML, PDF) over a run or artifacts.

    RUN_OR_MODELS is a pipeline run's name (a folder of $LMFORGE_HOME/runs/: every artifact
    it produced) or artifact names. Every number names the stored result it comes from;
    what none records is listed as a gap with the command that records it.
    """
    from pathlib import Path

    from lmforge.report.comprehensive import default_out, resolve, write_report

    names, run = resolve(targets)
    folder = Path(out) if out else default_out(names, run)
    paths = write_report(
        names, folder, run=run, explain_prompt=explain_prompt, pdf=pdf, guard=guard
    )
    for path in paths.values():
        click.echo(f"wrote {path}")
    if pdf and "pdf" not in paths:
        click.echo("no PDF: no converter worked (install chromium, or pip install weasyprint)")


@cli.command("explain")
@click.argument("model", required=False)
@click.option(
    "--format",
    "format_",
    type=click.Choice(["html", "terminal"]),
    default="html",
    show_default=True,
    help="html: write explain.html, heatmap.png and explain.json to --out; terminal: print only.",
)
@click.option(
    "--out", default="explain", show_default=True, type=click.Path(file_okay=False), help="Folder."
)
@config_options(ExplainConfig)
def explain_cmd(model, format_, out, **flags):
    """Explain MODEL's answer to --prompt: which input tokens drove each output token.

    Without --target the model's greedy answer is explained token by token; --contrast
    explains why the target beat an alternative. Also an attention view per layer and
    head and the logit lens (what each layer would predict).
    """
    from lmforge.explain import explain, print_terminal, write_explanation

    config = ExplainConfig.from_dict({k: v for k, v in flags.items() if v is not None})
    explanation = explain(_load(model, None), config=config)
    print_terminal(explanation)
    if format_ == "html":
        for path in write_explanation(explanation, out).values():
            click.echo(f"wrote {path}")


@cli.command("run")
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Print each step, cached or to run, and why.")
@click.option("--force", multiple=True, help="Run this step even if cached (repeatable).")
@click.option("--from", "start", help="Run this step and every step after it.")
@click.option("--skip", multiple=True, help="Leave this step out (repeatable).")
@click.option("--serve", is_flag=True, help="Run the recipe's serve step in the foreground.")
def run_cmd(recipe, dry_run, force, start, skip, serve):
    """Run a recipe (YAML) of steps; a re-run skips the steps whose inputs and config are unchanged.

    Every step and key of the recipe is checked, with its line, before anything runs.
    Results are recorded in $LMFORGE_HOME/runs/NAME/state.json.
    """
    from lmforge.pipeline import load_recipe, plan, print_plan, run

    loaded = load_recipe(recipe, skip=tuple(skip))
    if dry_run:
        print_plan(plan(loaded, force=tuple(force), start=start))
        return
    run(loaded, force=tuple(force), start=start, serve=serve)


@cli.group()
def clip() -> None:
    """Zero-shot image classification and text-to-image search with a CLIP-style model.

    No CLIP model ships with lmforge: --model names a local CLIPModel or SigLIP folder.
    """


_CLIP_MODEL = click.option(
    "--model", "model_dir", help="A local CLIP/SigLIP folder (required: none ships offline)."
)
_TEMPLATE = click.option(
    "--template", default="a photo of a {}.", show_default=True, help="How a label reads."
)


@clip.command("classify")
@click.argument("image")
@click.option("--labels", required=True, help="Comma-separated labels, e.g. cat,dog,car.")
@_CLIP_MODEL
@_TEMPLATE
def clip_classify(image, labels, model_dir, template):
    """Print the probability of each label for IMAGE, most likely first."""
    from lmforge.vision.clip import ClipModel

    for label, p in ClipModel.load(model_dir).classify(image, labels, template).items():
        click.echo(f"{p:.4f}  {label}")


@clip.command("search")
@click.argument("folder")
@click.option("--query", required=True, help="What to look for, in words.")
@click.option("--k", default=5, show_default=True, help="How many images to show.")
@_CLIP_MODEL
def clip_search(folder, query, k, model_dir):
    """Rank FOLDER's images by QUERY; the index is kept and only changed files re-embedded."""
    from lmforge.vision.clip import ClipModel

    model = ClipModel.load(model_dir)
    stats = model.index(folder)
    n = stats.embedded + stats.kept
    click.echo(
        f"indexed {n} images ({stats.embedded} embedded, {stats.kept} unchanged, "
        f"{stats.removed} removed)",
        err=True,
    )
    for skipped in stats.skipped:
        click.echo(f"skipped {skipped}", err=True)
    for hit in model.search(query, k):
        click.echo(f"{hit.score:.4f}  {hit.path}")


@clip.command("eval")
@click.argument("task")
@_CLIP_MODEL
@_TEMPLATE
@click.option("--out", help="Result file [default: ./eval-TASK-MODEL.json].")
def clip_eval(task, model_dir, template, out):
    """Zero-shot accuracy on TASK, a JSONL of {"image": PATH, "label": TEXT} lines.

    `lmforge eval CLIP_FOLDER --suite TASK.jsonl` does the same.
    """
    _zero_shot_eval(model_dir, task, template, out)


def _zero_shot_eval(model_dir, task, template, out) -> None:
    from pathlib import Path

    from lmforge.evaluate.runner import write_result
    from lmforge.evaluate.zero_shot import evaluate_zero_shot
    from lmforge.vision.clip import ClipModel

    model = ClipModel.load(model_dir)
    doc = evaluate_zero_shot(model, task, template)
    path = write_result(doc, Path(out or f"eval-{Path(task).stem}-{model.name}.json"))
    acc = next(iter(doc["tasks"].values()))["accuracy"]
    click.echo(f"accuracy {acc['acc']:.3f} on {acc['n']} images; wrote {path}")


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors print one line and exit 2; --debug shows the traceback."""
    args = sys.argv[1:] if argv is None else argv
    try:
        cli.main(args=args, prog_name="lmforge", standalone_mode=False)
    except LmforgeError as e:
        # lmforge's own --debug comes before the command: a prompt holding "--debug" is text
        if "--debug" in itertools.takewhile(lambda a: a.startswith("-"), args):
            raise
        click.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
