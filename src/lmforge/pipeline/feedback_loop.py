"""The steps of the feedback loop: export what `lmforge serve` collected, gate, hot-swap.

`feedback` writes the web chat's ratings and edits as training data; `gate` compares two
eval results on a metric (steps that read a closed gate do not run); `swap` loads an adapter
into a running server through its admin API (`lmforge.serve.adapters`).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lmforge.errors import InvalidInputError, LmforgeError
from lmforge.pipeline.registry import Output, StepCall, register_step


@dataclass
class FeedbackArgs:
    format: str = field(default="dpo", metadata={"help": "dpo (pairs) or sft (chat)."})
    db: str | None = field(
        default=None, metadata={"help": "Feedback store [default: $LMFORGE_HOME/serve.db]."}
    )
    out: str | None = field(
        default=None, metadata={"help": "JSONL file [default: the run folder]."}
    )

    def validate(self) -> FeedbackArgs:
        if self.format not in ("dpo", "sft"):
            raise InvalidInputError(f"unknown format {self.format!r}", "use dpo or sft")
        return self


def feedback_records(args: FeedbackArgs) -> list[dict]:
    """The training records of the feedback store (the step's cache key reads them too)."""
    from lmforge.errors import NotFoundError
    from lmforge.serve.feedback import FeedbackStore

    store = FeedbackStore(args.db)
    if not store.path.is_file():
        raise NotFoundError(
            f"no feedback store at {store.path}",
            "chat at `lmforge serve`'s page first, or give the step a db: path",
        )
    return store.records(args.format)


def feedback_fingerprint(args: FeedbackArgs) -> str:
    """The step's input is the store's records, not the database file's bytes."""
    text = json.dumps(feedback_records(args), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


@register_step("feedback", args=FeedbackArgs, produces="files", fingerprint=feedback_fingerprint)
def feedback(call: StepCall) -> Output:
    """Export the feedback collected by `lmforge serve` as dpo pairs or sft chats (JSONL)."""
    from lmforge.serve.feedback import FeedbackStore

    a = call.args
    feedback_records(a)  # the clear error for a missing store
    out = Path(a.out) if a.out else call.folder / f"{a.format}.jsonl"
    count = FeedbackStore(a.db).export(a.format, out)
    print(f"wrote {count} {a.format} record(s) to {out}")
    return Output(files=[out])


@dataclass
class GateArgs:
    candidate: str = field(metadata={"help": "The candidate's eval result (an evaluate step)."})
    baseline: str = field(metadata={"help": "The baseline's eval result (an evaluate step)."})
    metric: str = field(default="acc", metadata={"help": "A summary figure of both results."})
    tolerance: float = field(
        default=0.0, metadata={"help": "How much worse the candidate may be and still pass."}
    )
    higher_is_better: bool = field(default=True, metadata={"help": "False for ece, flip_rate."})

    def validate(self) -> GateArgs:
        if self.tolerance < 0:
            raise InvalidInputError("tolerance must be >= 0", "use e.g. 0.01")
        return self


def _figure(path: str, metric: str) -> float:
    try:
        summary = json.loads(Path(path).read_text())["summary"]
    except (OSError, ValueError, KeyError) as e:
        raise InvalidInputError(
            f"{path} is not an eval result ({e})", "give an evaluate step"
        ) from e
    if not isinstance(summary.get(metric), int | float):
        raise InvalidInputError(
            f"{path} has no {metric!r} figure", f"use one of: {', '.join(sorted(summary))}"
        )
    return float(summary[metric])


@register_step("gate", args=GateArgs, produces="files")
def gate(call: StepCall) -> Output:
    """Compare two eval results on a metric: steps that read a closed gate do not run."""
    a = call.args
    cand, base = _figure(a.candidate, a.metric), _figure(a.baseline, a.metric)
    delta = cand - base if a.higher_is_better else base - cand  # > 0: the candidate is better
    passed = delta >= -a.tolerance
    decision = {**asdict(a), "candidate_value": cand, "baseline_value": base, "passed": passed}
    call.folder.mkdir(parents=True, exist_ok=True)
    path = call.folder / "gate.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(decision, indent=2))
    os.replace(tmp, path)
    verdict = "passed" if passed else "closed"
    print(f"gate {verdict}: {a.metric} {base:.4f} -> {cand:.4f} (tolerance {a.tolerance})")
    return Output(files=[path], passed=passed)


@dataclass
class SwapArgs:
    url: str = field(metadata={"help": "The running server's base URL, e.g. http://127.0.0.1:8000"})
    adapter: str = field(metadata={"help": "The adapter artifact to load.", "artifact": True})
    replace: str | None = field(
        default=None,
        metadata={
            "help": "A served adapter the new one takes over in place: clients keep asking "
            "for base:REPLACE and get the new adapter from the next request on."
        },
    )
    unload: str | None = field(
        default=None, metadata={"help": "An adapter to unload once the new one is in."}
    )
    api_key_env: str = field(
        default="LMFORGE_API_KEY", metadata={"help": "Environment variable holding the API key."}
    )
    gate: str | None = field(
        default=None, metadata={"help": "A gate step (${ID}): swap only if it passed."}
    )


def _admin(method: str, url: str, key: str | None, body: dict | None = None) -> dict:
    import urllib.error
    import urllib.request

    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as e:
        try:
            message = json.loads(e.read())["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = e.reason
        raise LmforgeError(
            f"{method} {url} answered {e.code}: {message}",
            "check the API key's variable and the adapter's base",
        ) from e
    except (urllib.error.URLError, OSError) as e:
        raise LmforgeError(
            f"cannot reach the server at {url} ({e})", "start `lmforge serve` or fix the url"
        ) from e


@register_step("swap", args=SwapArgs, produces="nothing", cache=False)
def swap(call: StepCall) -> Output:
    """Load an adapter into a running `lmforge serve` (admin API): in place of a served one
    (`replace`), or beside it, then unload the old one (`unload`)."""
    a = call.args
    key = os.environ.get(a.api_key_env)
    base = a.url.rstrip("/")
    body = {"name": a.adapter, **({"as": a.replace} if a.replace else {})}
    loaded = _admin("POST", f"{base}/admin/adapters", key, body)
    if a.unload and a.unload not in (a.adapter, a.replace):
        _admin("DELETE", f"{base}/admin/adapters/{a.unload}", key)
    print(f"serving {loaded.get('model', a.adapter)} at {base}/v1")
    return Output(value=a.adapter)
