"""Arrival-to-raw latency of the Kafka path: from a message produced to its event being in the
raw zone's day partition, through the real sensor and a real Dagster run.

The sensor is ticked every `--interval` seconds (Dagster's daemon does this in production; the
default interval there is 10 s), and each run request is executed at once in this process, as
a free run worker would. Messages are produced at random moments, so each waits on average half
an interval for the next tick.

    .venv/bin/python benchmarks/bench_arrival_latency.py --events 20 --interval 2
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--interval", type=float, default=2.0, help="sensor interval, seconds")
    args = parser.parse_args()

    root = tempfile.mkdtemp(prefix="bench_latency_")
    os.environ.update(LDP_HOME=root, HF_HUB_OFFLINE="1")

    import dagster as dg
    from confluent_kafka import Producer

    from llm_data_platform.definitions import build_resources, graph
    from llm_data_platform.defs.ingest.stream_sensors import kafka_sensor
    from llm_data_platform.resources.stream_sources import StreamSourcesResource
    from llm_data_platform.settings import load_settings

    settings = load_settings()
    assets = graph(settings)
    quiet = logging.getLogger("bench.kafka")
    quiet.setLevel(logging.CRITICAL)
    cluster = Producer({"test.mock.num.brokers": 1, "logger": quiet})
    bootstrap = ",".join(
        f"{b.host}:{b.port}" for b in cluster.list_topics(timeout=10).brokers.values()
    )
    topic = "latency"
    resources = {
        **build_resources(settings),
        "sources": StreamSourcesResource(
            kafka_bootstrap=bootstrap, kafka_topics=f"conversations={topic}", kafka_group="bench"
        ),
    }
    lake = resources["lake"]
    sensor = kafka_sensor("conversations")
    producer = Producer({"bootstrap.servers": bootstrap, "logger": quiet})
    day = datetime.now(UTC).date().isoformat()
    produced: dict[str, float] = {}
    seen: dict[str, float] = {}
    run_seconds: list[float] = []

    def produce_all() -> None:
        for i in range(args.events):
            time.sleep(random.uniform(0.2, 1.5) * args.interval)
            event_id = f"lat-{i:04d}"
            event = {
                "event_id": event_id,
                "type": "message",
                "conversation_id": f"c{i}",
                "turn": 0,
                "role": "user",
                "content": "How do I reverse a list in Python?",
                "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            }
            produced[event_id] = time.perf_counter()
            producer.produce(topic, value=json.dumps(event).encode())
            producer.flush(5)

    thread = threading.Thread(target=produce_all)
    thread.start()
    cursor = None
    quiet_config = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
    while thread.is_alive() or len(seen) < len(produced):
        tick_started = time.perf_counter()
        with dg.build_sensor_context(
            cursor=cursor, resources={"sources": resources["sources"], "lake": lake}
        ) as context:
            result = sensor(context)
        if isinstance(result, dg.SensorResult):
            cursor = result.cursor
            for request in result.run_requests:  # the staging run, then its days' raw runs
                started = time.perf_counter()
                staged = dg.materialize(
                    assets,
                    selection=dg.AssetSelection.assets(
                        "conversations_batches", "conversations_batches_quarantine"
                    ),
                    resources=resources,
                    run_config={**request.run_config, **quiet_config},
                )
                days = next(
                    m.metadata["days"].value
                    for m in staged.asset_materializations_for_node("stage_conversations")
                    if m.asset_key == dg.AssetKey("conversations_batches")
                )
                for partition in days:
                    dg.materialize(
                        assets,
                        selection=dg.AssetSelection.assets(
                            "raw_conversations", "raw_conversations_quarantine"
                        ),
                        resources=resources,
                        partition_key=partition,
                        run_config=quiet_config,
                    )
                run_seconds.append(time.perf_counter() - started)
                now = time.perf_counter()
                table = lake.read_partitions("raw", "raw_conversations", keys=days)
                for event_id in table["event_id"].to_pylist() if table is not None else []:
                    seen.setdefault(event_id, now)
        time.sleep(max(0.0, args.interval - (time.perf_counter() - tick_started)))
    thread.join()

    latencies = sorted(seen[e] - produced[e] for e in produced)
    p50 = statistics.median(latencies)
    p95 = latencies[max(0, round(0.95 * len(latencies)) - 1)]
    run_p50 = statistics.median(run_seconds)
    print(f"{len(latencies)} events to Kafka (mock cluster, 127.0.0.1), partition {day}, 2 cores")
    print(f"sensor interval {args.interval:.1f} s; staging + raw run time p50 {run_p50:.2f} s")
    print(f"arrival → raw latency p50 {p50:.2f} s, p95 {p95:.2f} s")
    bound = 2 * args.interval + run_p50
    print(
        f"goal: p95 under 2 sensor intervals + run time = {bound:.2f} s → "
        f"{'met' if p95 <= bound else 'missed'}"
    )


if __name__ == "__main__":
    main()
