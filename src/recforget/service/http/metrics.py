"""Prometheus metrics of one app (its own registry: two apps in a process do not clash).

Labels are states, routes (templates), methods and status codes only: no ids of any kind.
Deletion-side numbers come from the database at scrape time (the worker is another process):
requests by state, queue depth, the oldest open request's age and the time left to the
earliest due date; batch build times, batch sizes and deletion-to-completion latencies are
read from the receipts written since the last scrape.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from recforget.service.states import State

OPEN = (State.RECEIVED, State.DATA_DELETED, State.BUILDING, State.STAGED)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
BATCH_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300)
COMPLETION_BUCKETS = (0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600, 86400, 30 * 86400)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_requests = Counter(
            "recforget_http_requests",
            "HTTP requests by method, route template and status code",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_seconds = Histogram(
            "recforget_http_request_seconds",
            "HTTP request latency by route template",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_seconds = Histogram(
            "recforget_batch_build_seconds",
            "Worker batch latency: unlearning pass and version write (from receipts)",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "recforget_batch_size",
            "Requests served by one unlearning pass",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=r,
        )
        self.completion_seconds = Histogram(
            "recforget_deletion_completion_seconds",
            "Deletion request latency, receipt of the request to COMPLETED",
            buckets=COMPLETION_BUCKETS,
            registry=r,
        )
        self.model_loads = Counter(
            "recforget_model_loads", "Serving model versions loaded and verified", registry=r
        )
        self.model_load_failures = Counter(
            "recforget_model_load_failures",
            "Serving model versions refused at load (the previous one kept serving)",
            registry=r,
        )
        self.model_version = Gauge(
            "recforget_serving_version", "Model version this process serves", registry=r
        )
        self.model_generation = Gauge(
            "recforget_serving_generation", "Serving generation this process serves", registry=r
        )
        self._receipt_seq = 0
        self._loads_seen = self._failures_seen = 0
        self._lock = threading.Lock()

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.http_requests.labels(method, route, str(status)).inc()
        self.http_seconds.labels(route).observe(seconds)

    def absorb_receipts(self, conn) -> None:
        """Fold receipts written since the last call into the batch/completion histograms."""
        from recforget.service.http import reads

        with self._lock:
            while True:
                rows = reads.receipts_after(conn, self._receipt_seq, limit=1000)
                if not rows:
                    return
                batches: dict[str, dict] = defaultdict(dict)
                for seq, body in rows:
                    self._receipt_seq = seq
                    t = body.get("timings") or {}
                    if t.get("completed_at") and t.get("received_at"):
                        self.completion_seconds.observe(t["completed_at"] - t["received_at"])
                    b = body.get("batch") or {}
                    if b.get("id"):
                        batches[b["id"]] = {"size": b.get("size"), "s": t.get("build_seconds")}
                for b in batches.values():
                    if b["s"] is not None:
                        self.batch_seconds.observe(b["s"])
                    if b["size"]:
                        self.batch_size.observe(b["size"])
                if len(rows) < 1000:
                    return

    def render(self, service, holder, read_conn) -> bytes:
        self.absorb_receipts(read_conn)
        m = holder.model
        if m is not None:
            self.model_version.set(m.version_id)
            self.model_generation.set(m.generation)
        self.model_loads.inc(holder.loads - self._loads_seen)
        self._loads_seen = holder.loads
        self.model_load_failures.inc(holder.failures - self._failures_seen)
        self._failures_seen = holder.failures
        from recforget.service.http import reads

        q = service.queue()
        q["heartbeat_at"] = reads.heartbeat(read_conn)["heartbeat_at"]
        extra = CollectorRegistry(auto_describe=True)
        extra.register(_QueueCollector(q))
        return generate_latest(self.registry) + generate_latest(extra)


class _QueueCollector:
    def __init__(self, q: dict) -> None:
        self.q = q

    def collect(self):
        q = self.q
        g = GaugeMetricFamily(
            "recforget_deletion_requests", "Deletion requests by state", labels=["state"]
        )
        for state, n in q["by_state"].items():
            g.add_metric([state], n)
        yield g
        yield GaugeMetricFamily(
            "recforget_queue_depth",
            "Deletion requests not yet completed, rejected or failed",
            value=sum(q["by_state"][s.value] for s in OPEN),
        )
        age = q["oldest_pending_age_s"]
        due = q["earliest_due_in_s"]
        yield GaugeMetricFamily(
            "recforget_oldest_pending_age_seconds",
            "Age of the oldest open deletion request (0: none open)",
            value=0.0 if age is None else age,
        )
        yield GaugeMetricFamily(
            "recforget_earliest_due_in_seconds",
            "Seconds until the earliest due date of an open request (negative: overdue; "
            "0 with none open)",
            value=0.0 if due is None else due,
        )
        frac = 0.0
        if age is not None and due is not None and age + due > 0:
            frac = age / (age + due)
        yield GaugeMetricFamily(
            "recforget_oldest_pending_due_fraction",
            "Oldest open request's age as a fraction of its time to due (1: due now)",
            value=frac,
        )
        beat = q.get("heartbeat_at")
        yield GaugeMetricFamily(
            "recforget_worker_heartbeat_age_seconds",
            "Seconds since the worker last renewed its lease (-1: never)",
            value=-1.0 if not beat else time.time() - beat,
        )


__all__ = ["Metrics"]
