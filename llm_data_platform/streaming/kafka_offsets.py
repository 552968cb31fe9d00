"""A consumer group's offsets: what it committed, what the topic holds, how a run shares it."""

from __future__ import annotations

from confluent_kafka import Consumer, KafkaException, TopicPartition

from llm_data_platform.streaming.kafka_config import KafkaSourceConfig, consumer_settings


def _partitions(consumer: Consumer, config: KafkaSourceConfig) -> list[int]:
    meta = consumer.list_topics(config.topic, timeout=config.metadata_timeout_s)
    topic = meta.topics.get(config.topic)
    if topic is None or topic.error is not None:
        return []
    return sorted(topic.partitions)


def _offsets(
    consumer: Consumer, config: KafkaSourceConfig, partitions: list[int]
) -> dict[int, tuple[int, int, int]]:
    """partition -> (committed or -1, low watermark, high watermark), high taken now."""
    tps = [TopicPartition(config.topic, p) for p in partitions]
    committed = {
        tp.partition: tp.offset for tp in consumer.committed(tps, timeout=config.metadata_timeout_s)
    }
    out = {}
    for p in partitions:
        low, high = consumer.get_watermark_offsets(
            TopicPartition(config.topic, p), timeout=config.metadata_timeout_s, cached=False
        )
        out[p] = (committed.get(p, -1), low, high)
    return out


def positions(config: KafkaSourceConfig) -> dict[int, tuple[int, int]]:
    """partition -> (group's committed offset or -1, high watermark): a snapshot a sensor can
    compare and name runs by (cheap: metadata calls only, no message is read)."""
    consumer = Consumer(consumer_settings(config))
    try:
        partitions = _partitions(consumer, config)
        return {
            p: (committed, high)
            for p, (committed, _, high) in _offsets(consumer, config, partitions).items()
        }
    finally:
        consumer.close()


def lag(config: KafkaSourceConfig) -> dict[int, int]:
    """Messages per partition not yet committed by the group (what a sensor polls)."""
    consumer = Consumer(consumer_settings(config))
    try:
        partitions = _partitions(consumer, config)
        return {
            p: high - max(committed, low) if committed >= 0 else high - low
            for p, (committed, low, high) in _offsets(consumer, config, partitions).items()
        }
    finally:
        consumer.close()


def _share(available: dict[int, int], budget: int) -> dict[int, int]:
    """Split ``budget`` between partitions fairly (water-filling), never above what each has."""
    out = {p: 0 for p in available}
    left = {p: a for p, a in available.items() if a > 0}
    while budget > 0 and left:
        each = max(1, budget // len(left))
        for p in sorted(left):
            take = min(each, left[p], budget)
            out[p] += take
            left[p] -= take
            budget -= take
            if left[p] == 0:
                del left[p]
            if budget == 0:
                break
    return out


def _commit(consumer: Consumer, topic: str, partition: int, offset: int) -> None:
    result = consumer.commit(offsets=[TopicPartition(topic, partition, offset)], asynchronous=False)
    for tp in result or []:
        if tp.error is not None:
            raise KafkaException(tp.error)
