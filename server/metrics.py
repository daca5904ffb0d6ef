"""Prometheus metrics, one registry per application (no import-time global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Buckets of waits that should take milliseconds (the broker's lag, the event loop's lag).
SHORT_WAITS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


class Metrics:
    def __init__(self, node_id: str = "") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.node_info = Gauge(
            "dienhong_node_info",
            "1, labelled with this process's node id (new at every start; each worker "
            "process of `dienhong serve --workers N` is a node of its own)",
            ["node"],
            registry=self.registry,
        )
        if node_id:
            self.node_info.labels(node_id).set(1)
        self.open_sockets = Gauge(
            "dienhong_open_sockets",
            "WebSocket connections currently open",
            registry=self.registry,
        )
        self.events_published = Counter(
            "dienhong_events_published_total",
            "Events committed and handed to the broker",
            registry=self.registry,
        )
        self.events_delivered = Counter(
            "dienhong_events_delivered_total",
            "Event frames queued to sockets",
            registry=self.registry,
        )
        self.queue_overflows = Counter(
            "dienhong_socket_queue_overflows_total",
            "Sockets closed with 4408 because their send queue was full",
            registry=self.registry,
        )
        self.events_recovered = Counter(
            "dienhong_events_recovered_total",
            "Events a hub read back from the log because the broker did not bring them",
            registry=self.registry,
        )
        self.write_conflicts = Counter(
            "dienhong_write_conflicts_total",
            "Group-committed write transactions (a batch or one item) lost to a deadlock "
            "or a serialization failure and written again",
            ["sqlstate"],
            registry=self.registry,
        )
        self.request_latency = Histogram(
            "dienhong_http_request_seconds",
            "HTTP request latency",
            ["method", "route", "status"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )

        self.broker_queue_depth = Gauge(
            "dienhong_broker_queue_depth",
            "Messages waiting to be published to Redis (the outbound queue)",
            registry=self.registry,
        )
        self.broker_dropped = Counter(
            "dienhong_broker_dropped_total",
            "Messages dropped instead of published (Redis slow or not answering); other "
            "nodes recover their events from the log",
            registry=self.registry,
        )
        self.broker_publish_lag = Histogram(
            "dienhong_broker_publish_lag_seconds",
            "Time from a committed write (or a signal) to its message reaching Redis",
            registry=self.registry,
            buckets=SHORT_WAITS,
        )
        self.broker_connected = Gauge(
            "dienhong_broker_connected",
            "1 while this node's Redis subscription is up (0: serving from the log only)",
            registry=self.registry,
        )

        self.loop_lag = Histogram(
            "dienhong_event_loop_lag_seconds",
            "How late a callback due now runs: the time every request, socket frame and "
            "database answer of this process waits for the event loop (sampled)",
            registry=self.registry,
            buckets=SHORT_WAITS,
        )
        self.write_queue_depth = Gauge(
            "dienhong_write_queue_depth",
            "Batched writes submitted and not answered yet (queued or being written), by kind",
            ["kind"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
