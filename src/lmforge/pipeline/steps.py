"""The built-in step types: each calls the library function its `lmforge` command calls.

A step's recipe keys are its `args` dataclass (below) plus, for the steps that have one, the
library's config dataclass: `tune` takes every TuneConfig key, `quantize` QuantizeConfig's,
`prune` PruneConfig's, `distill` DistillConfig's, `evaluate` EvalConfig's, `explain`
ExplainConfig's. `artifact` in a field's metadata marks a store artifact the step reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lmforge.pipeline.registry import Output, StepCall, register_step


def _model(help_text: str = "Model: a store name, a path, or default (the embedded model)."):
    return field(default=None, metadata={"help": help_text, "artifact": True})


def _out(help_text: str = "Name of the artifact it writes [default: RECIPE-STEP]."):
    return field(default=None, metadata={"help": help_text})


# -- models ----------------------------------------------------------------------------------


@dataclass
class LoadArgs:
    model: str | None = _model()
    out: str | None = _out("Name for a model imported from a path [default: RECIPE-STEP].")


@register_step("load", args=LoadArgs)
def load(call: StepCall) -> Output:
    """A model to start from: the embedded default, a store name, or a local folder/GGUF."""
    from lmforge.models.convert import import_model
    from lmforge.models.sources import resolve
    from lmforge.store import Store

    store = Store()
    folder, name, artifact = resolve(call.args.model, store)
    if artifact is None:  # a Hugging Face folder: import it, so later steps read the store
        artifact = import_model(folder, call.out_name, store, overwrite=store.exists(call.out_name))
    return Output(artifact=artifact.name)


@dataclass
class ModelArgs:
    model: str | None = _model()


@register_step("tune", args=ModelArgs, config="lmforge.tune.config:TuneConfig")
def tune(call: StepCall) -> Output:
    """Fine-tune (lora, dora, ia3, prompt, prefix, full) or preference-tune (dpo) a model.

    After a failed or interrupted run of the same step, training continues from its last
    checkpoint (`lmforge tune --resume`).
    """
    from lmforge.tune.trainer import tune as run_tune

    config = call.config
    config.out = config.out or call.out_name
    return Output(artifact=run_tune(call.args.model, config.validate(), resume=call.resume).name)


@dataclass
class ModelOutArgs:
    model: str | None = _model()
    out: str | None = _out()


@register_step("quantize", args=ModelOutArgs, config="lmforge.compress.quantize:QuantizeConfig")
def quantize(call: StepCall) -> Output:
    """Quantize a model's weights to int8 or int4."""
    from lmforge.compress.quantize import print_report
    from lmforge.compress.quantize import quantize as run_quantize

    artifact = run_quantize(call.args.model, call.out_name, call.config)
    print_report(artifact)
    return Output(artifact=artifact.name)


@register_step("prune", args=ModelOutArgs, config="lmforge.compress.prune_config:PruneConfig")
def prune(call: StepCall) -> Output:
    """Prune a model: zero weights, or remove heads, channels or layers."""
    from lmforge.compress.prune import print_report
    from lmforge.compress.prune import prune as run_prune

    artifact = run_prune(call.args.model, call.out_name, call.config.validate())
    print_report(artifact)
    return Output(artifact=artifact.name)


@dataclass
class DistillArgs:
    teacher: str | None = _model("Teacher: a store name or path [default: the embedded model].")
    out: str | None = _out()


@register_step("distill", args=DistillArgs, config="lmforge.compress.distill:DistillConfig")
def distill(call: StepCall) -> Output:
    """Distill a teacher into a smaller student."""
    from lmforge.compress.distill import distill as run_distill
    from lmforge.compress.distill import print_summary

    artifact = run_distill(call.args.teacher, call.out_name, call.config.validate())
    print_summary(artifact)
    return Output(artifact=artifact.name)


@dataclass
class MergeArgs:
    adapter: str = field(metadata={"help": "A LoRA/DoRA/IA3 adapter artifact.", "artifact": True})
    out: str | None = _out()


@register_step("merge", args=MergeArgs)
def merge(call: StepCall) -> Output:
    """Fold an adapter into its base: a full model (what quantize, prune and export take)."""
    from lmforge.tune.merge import merge as run_merge

    return Output(artifact=run_merge(call.args.adapter, call.out_name).name)


# -- measuring and documenting ---------------------------------------------------------------


@dataclass
class EvalArgs:
    model: str = field(metadata={"help": "The model or adapter to evaluate.", "artifact": True})


@register_step(
    "evaluate", args=EvalArgs, config="lmforge.evaluate.runner:EvalConfig", produces="files"
)
def evaluate(call: StepCall) -> Output:
    """Evaluate a model on a suite into its artifact's evals/SUITE.json."""
    from lmforge.evaluate.report import print_result
    from lmforge.evaluate.runner import evaluate_artifact

    doc, path = evaluate_artifact(call.args.model, call.config.suite, call.config)
    print_result(doc)
    return Output(files=[path])


@register_step(
    "explain",
    args=ModelArgs,
    config="lmforge.explain.config:ExplainConfig",
    produces="files",
    needs="lmforge.explain",
)
def explain(call: StepCall) -> Output:
    """Explain a model's answer to a prompt (HTML page, heatmap, JSON) into the run folder."""
    from lmforge.explain import explain as run_explain
    from lmforge.explain import write_explanation
    from lmforge.models.loader import load

    explanation = run_explain(load(call.args.model), config=call.config.validate())
    paths = write_explanation(explanation, call.folder)
    return Output(files=list(paths.values()), value=str(call.folder))


@dataclass
class CardArgs:
    model: str = field(metadata={"help": "The model or adapter to document.", "artifact": True})


@register_step("card", args=CardArgs, produces="files", needs="lmforge.report.card")
def card(call: StepCall) -> Output:
    """Write the model card (card.md) into an artifact."""
    from lmforge.report.card import write_card

    return Output(files=[write_card(call.args.model)])


@dataclass
class ComplianceArgs:
    model: str = field(metadata={"help": "The model or adapter to document.", "artifact": True})
    role: str = field(default="provider", metadata={"help": "provider or deployer."})
    use_case: str | None = field(default=None, metadata={"help": "The intended use, in words."})


@register_step(
    "compliance", args=ComplianceArgs, produces="files", needs="lmforge.report.compliance"
)
def compliance(call: StepCall) -> Output:
    """Write the regulatory documentation files of an artifact."""
    from lmforge.report.compliance import write_compliance

    a = call.args
    paths = write_compliance(a.model, role=a.role, use_case=a.use_case)
    return Output(files=list(paths.values()))


@dataclass
class ReportArgs:
    models: list[str] = field(
        metadata={"help": "The artifacts to set side by side.", "artifact": True}
    )
    out: str | None = field(
        default=None, metadata={"help": "Folder [default: $LMFORGE_HOME/runs/RECIPE/STEP]."}
    )
    explain: str | None = field(
        default=None,
        metadata={"help": "A prompt whose answer by the last model the report explains."},
    )


@register_step("report", args=ReportArgs, produces="files", needs="lmforge.report.comprehensive")
def report(call: StepCall) -> Output:
    """Write the comprehensive report (HTML with plots) over several artifacts."""
    from lmforge.report.comprehensive import write_report

    out = Path(call.args.out) if call.args.out else call.folder
    run = call.folder.parent  # $LMFORGE_HOME/runs/RECIPE: the steps so far go in its table
    paths = write_report(
        list(call.args.models),
        out,
        run=run.name if (run / "state.json").is_file() else None,
        explain_prompt=call.args.explain,
    )
    return Output(files=list(paths.values()), value=str(out))


# -- shipping --------------------------------------------------------------------------------


@dataclass
class ExportArgs:
    model: str | None = _model()
    out: str | None = field(
        default=None,
        metadata={"help": "A .gguf file or folder [default: $LMFORGE_HOME/runs/RECIPE/STEP]."},
    )
    format: str = field(default="gguf", metadata={"help": "gguf or hf."})
    type: str | None = field(default=None, metadata={"help": "f32|f16|q8_0|q4_0."})
    verify: bool = field(default=True, metadata={"help": "Reload and compare the export."})


@register_step("export", args=ExportArgs, produces="files")
def export(call: StepCall) -> Output:
    """Export a model as GGUF (with an Ollama Modelfile) or a Hugging Face folder."""
    from lmforge.compress.export import export as run_export
    from lmforge.compress.export import print_report

    a = call.args
    out = a.out or call.folder
    result = run_export(a.model, out, a.format, a.type, overwrite=True, verify=a.verify)
    print_report(result)
    files = [Path(result["path"])] + ([Path(result["modelfile"])] if result["modelfile"] else [])
    return Output(files=files)


@dataclass
class ServeArgs:
    model: str | None = _model("The model to serve [default: the embedded model].")
    adapters: list[str] | None = field(
        default=None, metadata={"help": "LoRA adapters of it to offer too.", "artifact": True}
    )
    host: str = field(default="127.0.0.1", metadata={"help": "Address to listen on."})
    port: int = field(default=8000, metadata={"help": "Port to listen on."})


def serve_command(args: ServeArgs) -> str:
    parts = ["lmforge serve", args.model or ""]
    parts += [f"--adapter {a}" for a in args.adapters or []]
    if args.host != "127.0.0.1":
        parts.append(f"--host {args.host}")
    if args.port != 8000:
        parts.append(f"--port {args.port}")
    return " ".join(p for p in parts if p)


@register_step("serve", args=ServeArgs, produces="nothing", cache=False)
def serve(call: StepCall) -> Output:
    """The last step: print how to serve the result (`lmforge run --serve` serves it here)."""
    from rich.console import Console

    a = call.args
    if not call.serve:
        Console().print(f"serve it: [bold]{serve_command(a)}[/bold]")
        return Output()
    from lmforge.models.loader import load
    from lmforge.serve.app import serve as run_serve
    from lmforge.serve.config import ServeConfig

    run_serve(load(a.model), ServeConfig(host=a.host, port=a.port), a.adapters or ())
    return Output()
