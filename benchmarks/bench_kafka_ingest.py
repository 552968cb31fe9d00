"""Kafka ingest throughput and memory, against librdkafka's mock cluster on 127.0.0.1.

    .venv/bin/python benchmarks/bench_kafka_ingest.py [--events 200000] [--backlog 1000000]

Prints:
- events/s of a raw consumer alone reading the topic (assign, consume, touch every value), and
  of ``ingest_once`` from the same topic to committed raw Parquet (parse, validate, quarantine,
  per-day zstd files, ledger, synchronous commits), and their ratio (goal ≥ 0.5), best of
  ``--repeat`` alternating runs; with each, the process CPU time of its best run (the machine's
  2 cores are shared: CPU time says what the run cost when the wall time is noisy);
- peak RSS while a larger backlog is ingested in bounded runs (``max_messages``, micro-batches
  of ``batch_messages``), measured in a fresh process after each run: flat means bounded.

The mock cluster keeps at most 5 MB of (compressed) log per partition, so the backlog is
produced and ingested in rounds; each round is a backlog of ``--round`` events drained by
several bounded runs. Everything runs in one process on the same cores as the brokers.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import resource
import shutil
import tempfile
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition

from llm_data_platform.resources.lake import LakeResource
from llm_data_platform.streaming.kafka_source import KafkaSourceConfig, ingest_once, lag
from llm_data_platform.streaming.producer import SyntheticChat

QUIET = logging.getLogger("bench.librdkafka")
QUIET.setLevel(logging.ERROR)


def start_cluster() -> tuple[Producer, str]:
    cluster = Producer({"test.mock.num.brokers": 1, "logger": QUIET})
    brokers = cluster.list_topics(timeout=10).brokers.values()
    return cluster, ",".join(f"{b.host}:{b.port}" for b in brokers)


def produce(bootstrap: str, topic: str, n: int, seed: int) -> None:
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 20,
            "compression.type": "lz4",
            "batch.num.messages": 10_000,
            "queue.buffering.max.kbytes": 32_768,
            "logger": QUIET,
        }
    )
    chat = SyntheticChat(seed=seed)
    sent = 0
    while sent < n:
        for key, value in chat.next_lines(min(10_000, n - sent)):
            while True:
                try:
                    producer.produce(topic, key=key.encode(), value=value)
                    break
                except BufferError:
                    producer.poll(0.01)
        sent = min(n, sent + 10_000)
        producer.poll(0)
    assert producer.flush(60) == 0


def check_retained(bootstrap: str, topic: str, n: int) -> None:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "bench-check", "logger": QUIET}
    )
    parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    marks = [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in parts]
    consumer.close()
    retained = sum(high - low for low, high in marks)
    if retained != n:
        raise SystemExit(f"the mock cluster kept {retained} of {n} messages: lower --events")


def raw_consume(bootstrap: str, topic: str) -> tuple[int, float]:
    """The baseline: a consumer alone, same settings, reading to the watermarks."""
    started = time.perf_counter()
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-raw-{uuid.uuid4().hex[:6]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "fetch.queue.backoff.ms": 20,  # the same fetch settings as ingest_once's consumer
            "queued.max.messages.kbytes": 32_768,
            "logger": QUIET,
        }
    )
    parts = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
    ends = {
        p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)[1]
        for p in parts
    }
    consumer.assign([TopicPartition(topic, p, 0) for p in parts])
    left, n, size = {p for p in parts if ends[p] > 0}, 0, 0
    while left:
        for message in consumer.consume(num_messages=10_000, timeout=1.0):
            if message.error():
                continue
            size += len(message.value())
            n += 1
            if message.offset() >= ends[message.partition()] - 1:
                left.discard(message.partition())
    consumer.close()
    return n, time.perf_counter() - started


def ingest(bootstrap: str, topic: str, n: int, batch_messages: int) -> tuple[int, float, int]:
    root = tempfile.mkdtemp(prefix="bench-lake-")
    try:
        config = KafkaSourceConfig(
            bootstrap_servers=bootstrap,
            topic=topic,
            group_id=f"bench-ingest-{uuid.uuid4().hex[:6]}",
            max_messages=n,
            batch_messages=batch_messages,
            run_timeout_s=600,
            consumer_config={"logger": QUIET},
        )
        started = time.perf_counter()
        report = ingest_once(config, LakeResource(root=root))
        seconds = time.perf_counter() - started
        assert not any(lag(config).values()), "ingest left a lag"
        assert report.rows + report.quarantined == report.messages == n
        return report.messages, seconds, len(report.batches)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def cpu_seconds() -> float:
    """CPU time of this process so far (all threads: librdkafka's, the mock brokers', ours)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_mb() -> tuple[float, float]:
    """(peak RSS, current RSS) of this process, MB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with open("/proc/self/statm") as f:
        current = int(f.read().split()[1]) * resource.getpagesize() / 2**20
    return peak, current


def memory_phase(backlog: int, round_size: int, max_messages: int, batch_messages: int, out):
    """In a fresh process: ingest ``backlog`` events in rounds, peak RSS after each run."""
    cluster, bootstrap = start_cluster()
    topic = f"backlog-{uuid.uuid4().hex[:6]}"
    root = tempfile.mkdtemp(prefix="bench-backlog-")
    config = KafkaSourceConfig(
        bootstrap_servers=bootstrap,
        topic=topic,
        group_id="bench-backlog",
        max_messages=max_messages,
        batch_messages=batch_messages,
        run_timeout_s=600,
        consumer_config={"logger": QUIET},
    )
    lake = LakeResource(root=root)
    baseline = rss_mb()  # imports (pyarrow, confluent-kafka, the package) + the mock cluster
    samples, done, runs = [], 0, 0
    started = time.perf_counter()
    try:
        while done < backlog:
            n = min(round_size, backlog - done)
            produce(bootstrap, topic, n, seed=done)
            while any(lag(config).values()):
                report = ingest_once(config, lake)
                runs += 1
                done += report.messages
                samples.append((done, *rss_mb()))
    finally:
        shutil.rmtree(root, ignore_errors=True)
        del cluster
    out.put((baseline, samples, runs, time.perf_counter() - started))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch-messages", type=int, default=25_000)
    parser.add_argument("--repeat", type=int, default=3, help="best of N for each timing")
    parser.add_argument("--backlog", type=int, default=1_000_000)
    parser.add_argument("--round", type=int, default=200_000, help="events produced per round")
    parser.add_argument("--max-messages", type=int, default=100_000, help="per ingest run")
    args = parser.parse_args(argv)

    cluster, bootstrap = start_cluster()
    topic = f"bench-{uuid.uuid4().hex[:6]}"
    t0 = time.perf_counter()
    produce(bootstrap, topic, args.events, seed=7)
    check_retained(bootstrap, topic, args.events)
    print(
        f"produced {args.events:,} chat events to {topic} (4 partitions, lz4) on the mock "
        f"cluster at {bootstrap} in {time.perf_counter() - t0:.1f}s"
    )
    raw_best = ingest_best = raw_cpu = ingest_cpu = float("inf")
    batches = 0
    for _ in range(args.repeat):
        cpu = cpu_seconds()
        n, seconds = raw_consume(bootstrap, topic)
        raw_cpu = min(raw_cpu, cpu_seconds() - cpu)
        assert n == args.events
        raw_best = min(raw_best, seconds)
        cpu = cpu_seconds()
        n, seconds, batches = ingest(bootstrap, topic, args.events, args.batch_messages)
        ingest_cpu = min(ingest_cpu, cpu_seconds() - cpu)  # includes the lag check after
        ingest_best = min(ingest_best, seconds)
    raw_rate, ingest_rate = args.events / raw_best, args.events / ingest_best
    print(
        f"(a) raw consumer alone:              {raw_rate:>10,.0f} events/s ({raw_best:.2f}s; "
        f"process CPU {raw_cpu:.2f}s)"
    )
    print(
        f"(b) ingest_once → committed Parquet: {ingest_rate:>10,.0f} events/s "
        f"({ingest_best:.2f}s, {batches} micro-batches of ≤{args.batch_messages:,}; "
        f"process CPU {ingest_cpu:.2f}s)"
    )
    print(f"ratio (b)/(a): {ingest_rate / raw_rate:.2f}  (goal ≥ 0.5; best of {args.repeat})")
    del cluster

    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(
        target=memory_phase,
        args=(args.backlog, args.round, args.max_messages, args.batch_messages, queue),
    )
    child.start()
    baseline, samples, runs, seconds = queue.get(timeout=3600)
    child.join()
    print(
        f"backlog of {args.backlog:,} events ingested in {runs} bounded runs "
        f"(max_messages={args.max_messages:,}, batch_messages={args.batch_messages:,}, "
        f"produced in rounds of {args.round:,}) in {seconds:.1f}s, fresh process:"
    )
    print(
        f"  before ingesting (imports + mock cluster): peak RSS {baseline[0]:7.1f} MB, "
        f"current RSS {baseline[1]:7.1f} MB"
    )
    marks = sorted(
        {0, len(samples) // 4, len(samples) // 2, 3 * len(samples) // 4, len(samples) - 1}
    )
    for i in marks:
        done, peak, current = samples[i]
        print(f"  after {done:>9,} events: peak RSS {peak:7.1f} MB, current RSS {current:7.1f} MB")
    first_peak, last_peak = samples[0][1], samples[-1][1]
    print(
        f"peak RSS {last_peak:.1f} MB after {samples[-1][0]:,} events vs {first_peak:.1f} MB "
        f"after the first run ({last_peak - first_peak:+.1f} MB)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
