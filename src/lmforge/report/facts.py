"""The facts of an artifact and its lineage, each with the file and key it was read from.

One place gathers what the store records, so that the model card, the compliance documents
and the comprehensive report all say the same thing and can all cite it. A value that no
file records is never guessed: it becomes a *gap*, a question a person must answer. A
person's answers go in `<artifact>/answers.yaml` (key: answer) and are cited from there.

Sources read like `qs-lora/artifact.json#data.sha256` (relative to the store root) or an
absolute path for files outside the store, e.g. the GGUF a model was imported from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmforge.errors import InvalidInputError
from lmforge.store import Artifact, Store


@dataclass(frozen=True)
class Fact:
    """A recorded value and where it was read (`file#key`)."""

    value: Any
    source: str


@dataclass
class Evaluation:
    """One result file `evals/<suite>.json` of an artifact."""

    artifact: str
    suite: str
    source: str  # e.g. "qs-lora/evals/quickstart.json"
    doc: dict[str, Any]


@dataclass
class Facts:
    """What the store records about one artifact, its ancestors and its evaluations."""

    name: str
    artifact: Artifact
    lineage: list[Artifact]  # this artifact first, its root last
    facts: dict[str, Fact] = field(default_factory=dict)
    datasets: list[dict[str, Fact]] = field(default_factory=list)  # one per data file used
    evals: dict[str, list[Evaluation]] = field(default_factory=dict)  # artifact -> results
    answers: dict[str, Fact] = field(default_factory=dict)  # from answers.yaml
    gaps: dict[str, str] = field(default_factory=dict)  # key -> the question to answer
    energy: dict[str, Any] = field(default_factory=dict)  # energy_ledger(...)

    def fact(self, key: str) -> Fact | None:
        """The answer a person gave for `key`, else the recorded fact, else None."""
        return self.answers.get(key) or self.facts.get(key)

    def value(self, key: str, default: Any = None) -> Any:
        found = self.fact(key)
        return default if found is None else found.value

    @property
    def own_evals(self) -> list[Evaluation]:
        return self.evals.get(self.name, [])

    def gap(self, key: str, question: str) -> None:
        if self.fact(key) is None:
            self.gaps.setdefault(key, question)


def plain(value: Any) -> Any:
    """`value` with every `Fact` inside it replaced by its value (for JSON)."""
    if isinstance(value, Fact):
        return plain(value.value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def lineage(name: str, store: Store) -> tuple[list[Artifact], str | None]:
    """The artifact and its ancestors (parent chain), nearest first.

    Returns the chain and, when a named parent is not in the store, that parent's name.
    """
    chain = [store.get(name)]
    seen = {name}
    while chain[-1].parent:
        parent = chain[-1].parent
        if parent in seen:  # a loop would be a corrupt store; stop rather than spin
            raise InvalidInputError(
                f"the lineage of {name!r} loops back to {parent!r}",
                f"fix the 'parent' key in {store.root / chain[-1].name / 'artifact.json'}",
            )
        if not store.exists(parent):
            return chain, parent
        seen.add(parent)
        chain.append(store.get(parent))
    return chain, None


def evaluations(artifact: Artifact, store: Store) -> tuple[list[Evaluation], list[str]]:
    """Every readable `evals/*.json` of `artifact`, by suite name; and the unreadable ones."""
    found, broken = [], []
    for path in sorted((artifact.path / "evals").glob("*.json")):
        source = _rel(path, store)
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            broken.append(source)
            continue
        if not isinstance(doc, dict) or not isinstance(doc.get("summary"), dict):
            broken.append(source)
            continue
        found.append(Evaluation(artifact.name, doc.get("suite") or path.stem, source, doc))
    return found, broken


def gather(name: str, store: Store | None = None) -> Facts:
    """Read everything recorded about artifact `name` and its lineage into `Facts`."""
    from lmforge.report.energy import energy_ledger

    store = store or Store()
    chain, missing_parent = lineage(name, store)
    art = chain[0]
    meta_src = f"{art.name}/artifact.json"
    facts = Facts(name=name, artifact=art, lineage=chain)
    _gather_answers(facts, store)
    put = facts.facts.__setitem__

    for key in ("name", "kind", "step", "parent", "created"):
        if art.meta.get(key) is not None:
            put(key, Fact(art.meta[key], f"{meta_src}#{key}"))
    if missing_parent:
        facts.gaps["lineage"] = (
            f"the parent {missing_parent!r} is not in the store: where did it come from?"
        )
    put(
        "lineage",
        Fact(
            [f"{a.name} ({a.step or '?'})" for a in reversed(chain)],
            ", ".join(f"{a.name}/artifact.json#parent" for a in chain),
        ),
    )
    root = chain[-1]
    put("base", Fact(root.name, f"{root.name}/artifact.json#name"))
    for key in ("source", "source_format"):
        if root.meta.get("config", {}).get(key):
            put(
                f"base.{key}",
                Fact(root.meta["config"][key], f"{root.name}/artifact.json#config.{key}"),
            )

    hashes = art.meta.get("hashes") or {}
    files = sorted(hashes)
    library = (
        "peft"
        if any(f.startswith("adapter/") for f in files)
        else "lmforge"
        if "model/quantization.json" in files
        else "transformers"
        if files
        else None
    )
    if library:
        put("library", Fact(library, f"{meta_src}#hashes"))
        put("files", Fact(files, f"{meta_src}#hashes"))
        weights = {f: h for f, h in hashes.items() if f.endswith(".safetensors")}
        if weights:
            put("weights.sha256", Fact(weights, f"{meta_src}#hashes"))
        put("io.modality", Fact("text in, text out", f"{meta_src}#hashes"))
        template = [f for f in files if f.endswith("chat_template.jinja")]
        if template:
            put("io.chat_template", Fact(template[0], f"{meta_src}#hashes"))
    if art.meta.get("versions"):
        put("versions", Fact(art.meta["versions"], f"{meta_src}#versions"))

    # Architecture: the nearest artifact of the lineage that records it (an adapter does not).
    for a in chain:
        model = a.meta.get("model")
        if isinstance(model, dict):
            for key in ("model_type", "parameters", "layers", "context"):
                if model.get(key) is not None:
                    put(f"model.{key}", Fact(model[key], f"{a.name}/artifact.json#model.{key}"))
            break
    plan = art.meta.get("config", {}).get("plan") or {}
    if art.kind == "adapter" and plan.get("trainable") is not None:
        put("adapter.trainable", Fact(plan["trainable"], f"{meta_src}#config.plan.trainable"))

    _gather_data(facts, store)
    _gather_training(facts)
    _gather_license(facts)
    for a in chain:
        found, broken = evaluations(a, store)
        if found:
            facts.evals[a.name] = found
        for source in broken:
            facts.gaps[f"unreadable:{source}"] = f"{source} is not a result file: re-run the eval"
    if facts.own_evals:
        put(
            "evals",
            Fact(
                [
                    {"suite": e.suite, "file": e.source, "summary": e.doc["summary"]}
                    for e in facts.own_evals
                ],
                "; ".join(f"{e.source}#summary" for e in facts.own_evals),
            ),
        )
    else:
        facts.gaps["evals"] = f"no evaluation results: run `lmforge eval {name}`"
    if facts.datasets:
        put(
            "data",
            Fact(
                [plain(d) for d in facts.datasets],
                "; ".join(f"{d['artifact'].value}/artifact.json#data" for d in facts.datasets),
            ),
        )
    facts.energy = energy_ledger(name, store)
    total = facts.energy["total"]
    ledger_src = "; ".join(r["source"] for r in facts.energy["rows"])
    if total["joules"] is not None:
        put("energy.joules", Fact(total["joules"], ledger_src))
        put("energy.method", Fact(total["label"], ledger_src))
    for key in list(facts.gaps):  # a person's answer closes a gap
        if key in facts.answers:
            del facts.gaps[key]
    return facts


def _gather_data(facts: Facts, store: Store) -> None:
    """The data files each step of the lineage read, identified by their sha256."""
    for a in reversed(facts.lineage):
        data = a.meta.get("data")
        if not isinstance(data, dict):
            continue
        src = f"{a.name}/artifact.json#data"
        entry = {"artifact": Fact(a.name, f"{a.name}/artifact.json#name")}
        entry["step"] = Fact(a.step, f"{a.name}/artifact.json#step")
        for key in ("path", "sha256", "format", "examples", "tokens", "license", "generated"):
            if data.get(key) is not None:
                entry[key] = Fact(data[key], f"{src}.{key}")
        if "sha256" not in entry and a.meta.get("config", {}).get("data_sha256"):
            entry["sha256"] = Fact(
                a.meta["config"]["data_sha256"], f"{a.name}/artifact.json#config.data_sha256"
            )
        answer = facts.answers.get(f"data.license.{a.name}")
        if "license" not in entry and answer is not None:
            entry["license"] = answer
        if "license" in entry:
            facts.facts[f"data.license.{a.name}"] = entry["license"]
        facts.datasets.append(entry)
        if "license" not in entry:
            what = data.get("path") or f"{a.name}'s data"
            facts.gaps[f"data.license.{a.name}"] = (
                f"under which license may the {a.step} data {what} be used?"
            )
    if not facts.datasets:
        facts.gaps["data"] = (
            "no step of the lineage records its data: what was the base model trained on?"
        )


_TRAINING_SCALARS = (
    "method", "rank", "alpha", "dropout", "lr", "epochs", "max_steps", "micro_batch",
    "grad_accum", "seq_len", "warmup", "weight_decay", "seed", "type", "group_size",
    "sparsity", "layers", "temperature", "dtype", "source_format",
)  # fmt: skip


def _gather_training(facts: Facts) -> None:
    """Per step of the lineage (root first): its settings, its results and its times."""
    steps = []
    for a in reversed(facts.lineage):
        src = f"{a.name}/artifact.json"
        config = a.meta.get("config") or {}
        entry = {
            "artifact": a.name,
            "step": a.step,
            "kind": a.kind,
            "parent": a.parent,
            "created": a.meta.get("created"),
            "source": src,
            "config": {
                k: Fact(config[k], f"{src}#config.{k}")
                for k in _TRAINING_SCALARS
                if isinstance(config.get(k), int | float | str) and not isinstance(config[k], bool)
            },
            "metrics": {
                k: Fact(v, f"{src}#metrics.{k}")
                for k, v in (a.meta.get("metrics") or {}).items()
                if isinstance(v, int | float | str)
            },
            "timings": {
                k: Fact(v, f"{src}#timings.{k}") for k, v in (a.meta.get("timings") or {}).items()
            },
        }
        steps.append(entry)
    facts.facts["training"] = Fact(steps, "; ".join(s["source"] for s in steps))
    seconds = [
        (a.name, a.meta["metrics"]["seconds"])
        for a in facts.lineage
        if isinstance((a.meta.get("metrics") or {}).get("seconds"), int | float)
    ]
    if seconds:
        facts.facts["training.seconds"] = Fact(
            round(sum(s for _, s in seconds), 3),
            "; ".join(f"{n}/artifact.json#metrics.seconds" for n, _ in seconds),
        )
    tokens = [
        (a.name, a.meta["metrics"]["tokens"])
        for a in facts.lineage
        if isinstance((a.meta.get("metrics") or {}).get("tokens"), int)
    ]
    if tokens:
        facts.facts["training.tokens"] = Fact(
            sum(t for _, t in tokens),
            "; ".join(f"{n}/artifact.json#metrics.tokens" for n, _ in tokens),
        )


def _gather_license(facts: Facts) -> None:
    """The base model's license: recorded by a step, else read from the lineage root's files."""
    found = None
    for a in facts.lineage:
        if a.meta.get("license"):
            found = Fact(a.meta["license"], f"{a.name}/artifact.json#license")
            break
    if found is None:
        found = license_of_root(facts.lineage[-1])
    if found is None:
        facts.gaps["license"] = (
            f"under which license is the base model {facts.lineage[-1].name} distributed?"
        )
        return
    facts.facts["license.base"] = found
    data = [d["license"] for d in facts.datasets if "license" in d]
    licenses = {str(found.value).lower(), *(str(d.value).lower() for d in data)}
    sources = "; ".join([found.source, *(d.source for d in data)])
    # the card's license: the base's when every recorded license agrees, else "other"
    facts.facts["license"] = Fact(found.value if len(licenses) == 1 else "other", sources)


def license_of_root(root: Artifact) -> Fact | None:
    """The license the root artifact's own files state (README front matter, GGUF metadata)."""
    candidates = [root.model_dir / "README.md"]
    source = root.meta.get("config", {}).get("source")
    if source:
        path = Path(source)
        if path.is_dir():
            candidates.append(path / "README.md")
        elif path.is_file() and path.suffix == ".gguf":
            value = _gguf_license(path)
            if value:
                return Fact(value, f"{path}#general.license")
    for readme in candidates:
        value = _front_matter(readme).get("license")
        if isinstance(value, str) and value:
            return Fact(value, f"{readme}#license")
    return None


def _gguf_license(path: Path) -> str | None:
    try:
        import gguf

        reader = gguf.GGUFReader(str(path))
        entry = reader.fields.get("general.license")
        if entry is None:
            return None
        value = entry.contents()
    except Exception:  # an unreadable GGUF means "not found", so the license becomes a gap
        return None
    return value if isinstance(value, str) and value else None


def _front_matter(readme: Path) -> dict[str, Any]:
    """The YAML block between the leading `---` lines of a README, or {}."""
    import yaml

    if not readme.is_file():
        return {}
    text = readme.read_text(errors="replace")
    if not text.startswith("---"):
        return {}
    block = text[3:].split("\n---", 1)[0]
    try:
        data = yaml.safe_load(block)
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def _gather_answers(facts: Facts, store: Store) -> None:
    """A person's answers to the gaps, from `<artifact>/answers.yaml`."""
    import yaml

    path = facts.artifact.path / "answers.yaml"
    if not path.is_file():
        return
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise InvalidInputError(
            f"{path} is not valid YAML ({str(e).splitlines()[0]})", "fix it: key: answer per line"
        ) from e
    if not isinstance(data, dict):
        raise InvalidInputError(f"{path} is not a mapping", "write one `key: answer` per line")
    src = _rel(path, store)
    for key, value in data.items():
        if value not in (None, ""):
            facts.answers[str(key)] = Fact(value, f"{src}#{key}")


def _rel(path: Path, store: Store) -> str:
    try:
        return path.relative_to(store.root).as_posix()
    except ValueError:
        return str(path)
