"""Read lm-evaluation-harness task YAMLs that point at local JSON/CSV files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmforge.errors import InvalidInputError
from lmforge.evaluate.task import Task

_KINDS = {
    "multiple_choice": "multiple_choice",
    "generate_until": "generate",
    "loglikelihood": "loglikelihood",
    "loglikelihood_rolling": "perplexity",
}
_METRICS = {"acc": "accuracy", "acc_norm": "accuracy", "exact_match": "accuracy"}


def _data_file(raw: dict[str, Any], path: Path) -> str:
    files = raw.get("data_files") or (raw.get("dataset_kwargs") or {}).get("data_files")
    split = raw.get("test_split") or raw.get("validation_split") or "test"
    if isinstance(files, dict):
        files = files.get(split) or next(iter(files.values()), None)
    if isinstance(files, list):
        files = files[0] if files else None
    if not files:
        raise InvalidInputError(
            f"{path}: no local data file (dataset_kwargs.data_files)",
            "lmforge reads lm-eval tasks whose dataset_path is json or csv with local data_files",
        )
    return str((path.parent / files).resolve())


def from_lm_eval(raw: dict[str, Any], path: Path) -> Task:
    """Translate the lm-eval keys we support; refuse hub datasets and Python hooks clearly."""
    source = raw.get("dataset_path")
    if source not in ("json", "csv"):
        raise InvalidInputError(
            f"{path}: dataset_path {source!r} would be fetched from a hub",
            "use dataset_path: json or csv with local data_files",
        )
    kind = _KINDS.get(raw.get("output_type", "generate_until"))
    if kind is None:
        raise InvalidInputError(
            f"{path}: unknown output_type {raw.get('output_type')!r}",
            f"use one of {sorted(_KINDS)}",
        )

    def template(key: str) -> str | None:
        value = raw.get(key)
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, list | tuple):
            return repr([str(v) for v in value])  # a literal list of choices
        if isinstance(value, int):
            return str(value)
        raise InvalidInputError(
            f"{path}: {key} of type {type(value).__name__} is not supported", "use a template"
        )

    gen = raw.get("generation_kwargs") or {}
    metrics = sorted(
        {_METRICS.get((m or {}).get("metric"), "accuracy") for m in raw.get("metric_list") or []}
    )
    return Task(
        name=str(raw.get("task", path.stem)),
        kind=kind,
        prompt=template("doc_to_text") or "{{ text }}",
        data={"path": _data_file(raw, path), "format": "csv" if source == "csv" else "jsonl"},
        choices=template("doc_to_choice"),
        target=template("doc_to_target"),
        fewshot=int(raw.get("num_fewshot") or 0),
        fewshot_separator=raw.get("fewshot_delimiter", "\n\n"),
        target_delimiter=raw.get("target_delimiter", " "),
        metrics=metrics or ["accuracy"],
        stop=list(gen.get("until") or ["\n\n"]),
        max_tokens=int(gen.get("max_gen_toks") or 32),
        source=str(path),
    )
