"""`GET /metrics`: the server's counters in the Prometheus text format (version 0.0.4).

Written by hand (a few counters, two histograms, two gauges) rather than with
`prometheus_client`, which is not a dependency. One `Metrics` per app, so several apps in a
process (tests) count apart. Every method is safe to call from any thread: requests are
counted by an ASGI middleware on the event loop, tokens by the scheduler thread.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable

# seconds; first-token times include queueing and prefill, token gaps one decode step
TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
ROUTES = (
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/models",
    "/v1/embeddings",
    "/v1/explain",
    "/health",
    "/metrics",
)
PREFIXES = {"/v1/models/": "/v1/models/{id}", "/admin/": "/admin", "/ui/": "/ui"}
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Histogram:
    """Cumulative buckets, a sum and a count, as Prometheus histograms are exposed."""

    def __init__(self, name: str, help: str, buckets: tuple[float, ...]):
        self.name, self.help, self.buckets = name, help, buckets
        self.counts = [0] * (len(buckets) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value

    def lines(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        total = 0
        for bound, count in zip((*self.buckets, float("inf")), self.counts, strict=True):
            total += count
            le = "+Inf" if bound == float("inf") else repr(bound)
            out.append(f'{self.name}_bucket{{le="{le}"}} {total}')
        out += [f"{self.name}_sum {self.sum!r}", f"{self.name}_count {total}"]
        return out


class Metrics:
    """What `/metrics` reports: requests by route and status, token timings and counts, and
    the scheduler's queue depth and running batch size (read when scraped)."""

    def __init__(
        self,
        waiting: Callable[[], int],
        running: Callable[[], int],
        cached: Callable[[], int] = lambda: 0,
        guard=None,
    ):
        self._lock = threading.Lock()
        self._guard = guard  # a lmforge.guard.Guard, whose counters are read when scraped
        self._waiting, self._running, self._cached = waiting, running, cached
        self.requests: dict[tuple[str, str], int] = {}  # (route, status) -> count
        self.tokens = 0
        self.ttft = Histogram(
            "lmforge_time_to_first_token_seconds",
            "Seconds from a request's submission to its first generated token.",
            TTFT_BUCKETS,
        )
        self.itl = Histogram(
            "lmforge_inter_token_latency_seconds",
            "Seconds between consecutive generated tokens of one request.",
            ITL_BUCKETS,
        )

    def count_request(self, path: str, status: int) -> None:
        with self._lock:
            key = (route_of(path), str(status))
            self.requests[key] = self.requests.get(key, 0) + 1

    def on_token(self, first: bool, seconds: float) -> None:
        """The scheduler's `on_token` hook: one generated token."""
        with self._lock:
            self.tokens += 1
            (self.ttft if first else self.itl).observe(seconds)

    def render(self) -> str:
        with self._lock:
            lines = [
                "# HELP lmforge_requests_total HTTP requests answered, by route and status.",
                "# TYPE lmforge_requests_total counter",
            ]
            for (route, status), count in sorted(self.requests.items()):
                lines.append(f'lmforge_requests_total{{route="{route}",status="{status}"}} {count}')
            lines += [
                "# HELP lmforge_generated_tokens_total Tokens generated (EOS excluded).",
                "# TYPE lmforge_generated_tokens_total counter",
                f"lmforge_generated_tokens_total {self.tokens}",
                *self.ttft.lines(),
                *self.itl.lines(),
            ]
        lines += [
            "# HELP lmforge_prompt_cached_tokens_total Prompt tokens whose keys and values came "
            "from the prompt cache.",
            "# TYPE lmforge_prompt_cached_tokens_total counter",
            f"lmforge_prompt_cached_tokens_total {self._cached()}",
            "# HELP lmforge_queue_depth Requests waiting for a row of the batch.",
            "# TYPE lmforge_queue_depth gauge",
            f"lmforge_queue_depth {self._waiting()}",
            "# HELP lmforge_running_requests Rows of the running batch in use.",
            "# TYPE lmforge_running_requests gauge",
            f"lmforge_running_requests {self._running()}",
        ]
        if self._guard is not None:
            lines += [
                "# HELP lmforge_guard_decisions_total Guard decisions, by direction and action.",
                "# TYPE lmforge_guard_decisions_total counter",
            ]
            for (direction, action), count in sorted(self._guard.counts.items()):
                lines.append(
                    f'lmforge_guard_decisions_total{{direction="{direction}",action="{action}"}} '
                    f"{count}"
                )
        return "\n".join(lines) + "\n"


def route_of(path: str) -> str:
    """A bounded route label: a served route, a family (`/v1/models/{id}`, `/admin`, `/ui`),
    or "other" (the page, unknown paths)."""
    if path in ROUTES:
        return path
    for prefix, label in PREFIXES.items():
        if path.startswith(prefix):
            return label
    return "other"


class CountRequests:
    """ASGI middleware: counts each HTTP response by route and status (500 if the app raised
    before answering). Pure ASGI, so streaming and disconnect detection pass through."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = [None]

        async def counted_send(message) -> None:
            if message["type"] == "http.response.start" and status[0] is None:
                status[0] = message["status"]
                self.metrics.count_request(scope["path"], status[0])
            await send(message)

        try:
            await self.app(scope, receive, counted_send)
        except BaseException:
            if status[0] is None:
                self.metrics.count_request(scope["path"], 500)
            raise
