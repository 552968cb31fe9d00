"""Drift checks on conversations_clean: quiet on stable days, a warning on a real shift.

Raw days are written straight into a temp lake with a known mix (PII share, junk share, long
messages, re-sent turns), then cleaned by the real step through ``dg.materialize``; the drift
checks run after it in the same run, as they do in the daily job.
"""

import base64
import io
import random
import re
from datetime import UTC, datetime
from functools import lru_cache

import dagster as dg
import numpy as np
import pyarrow as pa
import pytest

from llm_data_platform_tests.conftest import graph_for, platform_env, settings_for

STABLE = ["2026-01-05", "2026-01-06", "2026-01-07", "2026-01-08"]
SHIFTED = "2026-01-09"
DRIFT = (
    "conversations_clean_dedup_rate_drift",
    "conversations_clean_pii_rate_drift",
    "conversations_clean_rejection_rate_drift",
    "conversations_clean_token_length_drift",
    "conversations_clean_quality_score_drift",
)
JUNK = [
    "buy now buy now buy now buy now buy now buy now buy now buy now",
    "asdkjh qwpoeiru zxmcnv lkjhgf poiuyt mnbvcx qwerty",
    "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
]
CONVERSATIONS, TURNS = 40, 5  # 200 messages a day


@lru_cache(maxsize=1)
def sentences() -> list[str]:
    """Distinct sentences of CPython's reference docs (real text that ships with Python), in
    a fixed shuffled order: each message of each day gets its own, so the cleaning's
    cross-day and near-copy dedup finds only the copies a test puts in."""
    import pydoc_data.topics

    found = set()
    for text in pydoc_data.topics.topics.values():
        for sentence in re.split(r"(?<=[.!?])\s+", " ".join(text.split())):
            if 40 <= len(sentence) <= 240 and sentence[0].isupper():
                found.add(sentence)
    ordered = sorted(found)
    random.Random(0).shuffle(ordered)
    return ordered


def _message(rng: random.Random, n: int, *, pii: bool, junk: bool, long: bool) -> str:
    """Message ``n`` of the test (its own sentence), junk, longer, or with an e-mail."""
    if junk:
        return f"{rng.choice(JUNK)} {rng.randint(0, 9)}"
    pool = sentences()
    text = pool[n]
    if long:  # extra sentences from the part of the pool short messages never use
        extra = rng.sample(pool[5 * CONVERSATIONS * TURNS :], rng.randint(4, 6))
        text = " ".join([text, *extra])
    if pii:
        text += f" Mail me at dev{rng.randint(1, 9999)}@example.com please."
    return text


def raw_day(key: str, day: int, *, pii: float, junk: float, long: float, resend: float):
    """Raw day number ``day`` (0-4): 40 five-turn conversations, plus re-sent turns."""
    rng = random.Random(day)
    at = datetime.fromisoformat(key).replace(hour=12, tzinfo=UTC)
    rows = []
    for c in range(CONVERSATIONS):
        for turn in range(TURNS):
            n = (day * CONVERSATIONS + c) * TURNS + turn
            draw = dict(pii=rng.random() < pii, junk=rng.random() < junk, long=rng.random() < long)
            row = dict(conversation_id=f"{key}-c{c:03d}", turn_index=turn)
            row["content"] = _message(rng, n, **draw)
            rows.append(row)
            if rng.random() < resend:  # the same turn sent again: a content duplicate
                rows.append(dict(row))
    n = len(rows)
    return pa.table(
        {
            "event_id": [f"{key}-e{i}" for i in range(n)],
            "event_type": ["message"] * n,
            "conversation_id": [r["conversation_id"] for r in rows],
            "turn_index": [r["turn_index"] for r in rows],
            "role": ["user" if r["turn_index"] % 2 == 0 else "assistant" for r in rows],
            "content": [r["content"] for r in rows],
            "rating": pa.nulls(n, pa.int8()),
            "user_id": [f"u{r['conversation_id'][-3:]}" for r in rows],
            "event_time": [at] * n,
            "source_file": [f"landing/{key}.jsonl"] * n,
            "source_line": list(range(1, n + 1)),
            "arrived_at": [at] * n,
        }
    )


STABLE_MIX = dict(pii=0.03, junk=0.03, long=0.05, resend=0.02)
SHIFTED_MIX = dict(pii=0.30, junk=0.30, long=0.60, resend=0.02)


@pytest.fixture(scope="module")
def lake_days(tmp_path_factory):
    """Four stable raw days and a shifted fifth in a temp lake; resources for them."""
    from llm_data_platform import schemas
    from llm_data_platform.definitions import build_resources

    root = tmp_path_factory.mktemp("drift")
    settings = settings_for(platform_env(root))
    resources = build_resources(settings)
    lake = resources["lake"]
    for i, key in enumerate([*STABLE, SHIFTED]):
        mix = SHIFTED_MIX if key == SHIFTED else STABLE_MIX
        table = raw_day(key, i, **mix).cast(schemas.RAW_CONVERSATIONS)
        lake.write_partition("raw", "raw_conversations", key, table)
    return settings, resources, dg.DagsterInstance.ephemeral()


def _clean(settings, resources, instance, keys: list[str]) -> dict[tuple[str, str], object]:
    """Clean ``keys`` in one run (a range when several); its drift check evaluations by
    (check, day)."""
    one = len(keys) == 1
    tags = {"dagster/asset_partition_range_start": keys[0]}
    tags["dagster/asset_partition_range_end"] = keys[-1]
    result = dg.materialize(
        graph_for(settings),
        selection=dg.AssetSelection.assets("conversations_clean", "conversations_clean_dropped"),
        resources=resources,
        instance=instance,
        **(dict(partition_key=keys[0]) if one else dict(tags=tags)),
    )
    assert result.success  # drift never fails a run: the checks are not blocking
    evaluations = result.get_asset_check_evaluations()
    for name in ("conversations_clean_has_no_pii", "conversations_clean_reconciles_with_raw"):
        assert all(e.passed for e in evaluations if e.check_name == name), name
    drift = {(e.check_name, e.partition): e for e in evaluations if e.check_name in DRIFT}
    assert set(drift) == {(name, day) for name in DRIFT for day in keys}  # one per day
    return drift


def _value(evaluation, key: str):
    return evaluation.metadata[key].value


def test_stable_days_stay_quiet_and_a_shifted_day_warns(lake_days):
    settings, resources, instance = lake_days
    stable = _clean(settings, resources, instance, STABLE)  # a backfill of the stable range
    for (name, day), evaluation in stable.items():
        assert evaluation.passed, (name, day, _value(evaluation, "verdict"))
        assert not evaluation.blocking and evaluation.severity == dg.AssetCheckSeverity.WARN
    for name in DRIFT:  # the 4th day has 3 days of history; the first three have fewer
        assert _value(stable[name, STABLE[-1]], "verdict") == "ok"
        assert _value(stable[name, STABLE[-1]], "baseline_days") == STABLE[:3]
        assert _value(stable[name, STABLE[0]], "verdict") == "no baseline: 0 of 3 days"
        assert _value(stable[name, STABLE[2]], "verdict") == "no baseline: 2 of 3 days"

    shifted = _clean(settings, resources, instance, [SHIFTED])
    for name in (
        "conversations_clean_pii_rate_drift",
        "conversations_clean_rejection_rate_drift",
        "conversations_clean_token_length_drift",
    ):
        evaluation = shifted[name, SHIFTED]
        assert not evaluation.passed, name
        assert evaluation.severity == dg.AssetCheckSeverity.WARN
        assert not evaluation.blocking
        assert _value(evaluation, "verdict") == "drift"
        assert _value(evaluation, "baseline_days") == STABLE
    dedup = shifted["conversations_clean_dedup_rate_drift", SHIFTED]
    assert dedup.passed, _value(dedup, "verdict")  # re-sends did not change

    pii = shifted["conversations_clean_pii_rate_drift", SHIFTED]
    assert 0.2 < _value(pii, "value") < 0.4 and _value(pii, "baseline") < 0.08
    assert _value(pii, "threshold") == pytest.approx(0.02)
    assert _value(pii, "value") - _value(pii, "baseline") > _value(pii, "noise_allowance")
    rejection = shifted["conversations_clean_rejection_rate_drift", SHIFTED]
    reasons = _value(rejection, "dropped_by_reason")
    assert sum(n for r, n in reasons["today"].items() if r.startswith("low_quality")) > 50
    tokens = shifted["conversations_clean_token_length_drift", SHIFTED]
    assert _value(tokens, "value") > _value(tokens, "threshold") == pytest.approx(0.2)
    png = re.search(r"base64,([A-Za-z0-9+/=]+)\)", _value(tokens, "token_histogram")).group(1)
    assert base64.b64decode(png)[:4] == b"\x89PNG"


def test_a_backfill_records_each_day_against_the_days_before_it(lake_days):
    """The whole range in one run, as a backfill runs it: one evaluation per check and day,
    each with its partition, which is what the UI's partition view reads."""
    from dagster._core.storage.asset_check_execution_record import (
        AssetCheckExecutionRecordStatus as Status,
    )

    settings, resources, _ = lake_days
    instance = dg.DagsterInstance.ephemeral()
    evaluations = _clean(settings, resources, instance, [*STABLE, SHIFTED])
    drifted = {day for (name, day), e in evaluations.items() if not e.passed}
    assert drifted == {SHIFTED}
    key = dg.AssetCheckKey(dg.AssetKey("conversations_clean"), "conversations_clean_pii_rate_drift")
    records = instance.event_log_storage.get_asset_check_execution_history(key, limit=20)
    status = {r.partition: r.status for r in records}
    assert status == {**{day: Status.SUCCEEDED for day in STABLE}, SHIFTED: Status.FAILED}


def test_thresholds_decide_and_a_missing_day_is_not_passed_unseen(lake_days):
    from llm_data_platform.defs.conversations.drift import DriftSettings, evaluate_drift

    settings, resources, instance = lake_days
    lake = resources["lake"]
    if lake.count_rows("clean", "conversations_clean", [SHIFTED]) is None:
        _clean(settings, resources, instance, [*STABLE, SHIFTED])
    keys = [*STABLE, SHIFTED]
    strict = evaluate_drift(lake, keys, DriftSettings())
    assert {r.key for r in strict if not r.passed} == {SHIFTED}
    # the threshold decides: a loose one lets the same day through
    loose = DriftSettings(max_pii_change=0.5, max_rejection_change=0.5, max_psi=5.0)
    results = evaluate_drift(lake, keys, loose)
    assert all(r.passed for r in results), [(r.check, r.key) for r in results if not r.passed]
    # a day with no clean file fails its checks (as warnings) instead of passing unseen
    for r in evaluate_drift(lake, ["2026-01-20"], DriftSettings()):
        assert not r.passed and r.metadata["verdict"] == "partition missing"


def _bin_table(md: str) -> dict[str, list[str]]:
    """A histogram entry's bin table as columns by header name (``bin``, ``today``, ...)."""
    lines = [line for line in md.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[1:]]
    return {name: [row[i] for row in rows] for i, name in enumerate(header)}


def test_a_clean_day_has_token_length_and_quality_histograms_for_its_materialization(
    lake_days,
):
    from PIL import Image

    from llm_data_platform.lib.drift_lake import clean_day_histograms

    settings, resources, instance = lake_days
    lake = resources["lake"]
    if lake.count_rows("clean", "conversations_clean", [STABLE[0]]) is None:
        _clean(settings, resources, instance, [STABLE[0]])
    meta = clean_day_histograms(lake, STABLE[0])
    assert {"token_histogram", "quality_histogram"} <= set(meta)
    for entry in meta.values():
        md = entry.value
        png = base64.b64decode(re.search(r"base64,([A-Za-z0-9+/=]+)\)", md).group(1))
        assert Image.open(io.BytesIO(png)).size == (512, 208)
        shares = [float(v.rstrip("%")) for v in _bin_table(md)["today"]]
        assert sum(shares) == pytest.approx(100.0, abs=0.5)  # the shares of every message
    assert clean_day_histograms(lake, "2026-01-20") == {}


def test_the_clean_materialization_carries_the_histograms_with_their_counts(tmp_path):
    """A demo day through the real graph (``dg.materialize``, raw then clean): the
    conversations_clean materialization has the three histograms, the token-length and
    quality counts summing to the messages kept (a demo day is under the token sample, so
    every message is tokenized) and the cluster counts to the representatives that the
    day's dropped near copies name."""
    import pyarrow.compute as pc

    from llm_data_platform_tests.conftest import DAYS, make_platform, materialize_daily

    platform = make_platform(tmp_path)
    day = DAYS[0]
    raw = ("raw_conversations", "raw_conversations_quarantine")
    selection = dg.AssetSelection.assets(*raw, "conversations_clean", "conversations_clean_dropped")
    result = materialize_daily(platform, [day], selection)
    assert result.success
    [event] = [
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey("conversations_clean")
    ]
    meta = event.materialization.metadata
    clean = platform.resources["lake"].read_partition("clean", "conversations_clean", day)
    messages = pc.sum(pc.equal(clean["event_type"], "message")).as_py()
    dropped = platform.resources["lake"].read_partition("clean", "conversations_clean_dropped", day)
    clusters = len(pc.unique(dropped["duplicate_of"].drop_null()))
    assert messages > 20 and clusters > 0  # the demo's near-duplicate sessions
    counts = {
        name: sum(int(c) for c in _bin_table(meta[name].value)["count"])
        for name in ("token_histogram", "quality_histogram", "cluster_histogram")
    }
    assert counts == {
        "token_histogram": messages,
        "quality_histogram": messages,
        "cluster_histogram": clusters,
    }
    for name, n in counts.items():
        assert f"({n} " in meta[name].value  # the picture's title says it too
        assert "data:image/png;base64," in meta[name].value


def test_dedup_and_rejection_by_reason_and_cluster_sizes_from_representatives():
    from llm_data_platform.lib import drift

    profiler = drift.Profiler(count_tokens=lambda texts: [len(t.split()) for t in texts])
    reasons = pa.array(
        ["duplicate_event", "near_duplicate", "near_duplicate", "duplicate_content_history"]
        + ["near_duplicate"] * 4
        + ["empty", "low_quality:keyboard_mash", "some_future_reason", None]
    )
    duplicate_of = pa.array(["e0", "a", "a", "b"] + ["c"] * 4 + [None] * 4)
    profiler.add_dropped(reasons, duplicate_of)
    p = profiler.profile
    assert p.received == 12 and p.deduplicated == 8 and p.rejected == 4
    # clusters: a (2 copies) -> 3 rows, b (1) -> 2, c (4) -> 5, e0 (1) -> 2
    labels = drift.bin_labels(drift.CLUSTER_EDGES)
    sizes = dict(zip(labels, p.cluster_hist.tolist(), strict=True))
    assert sizes == {"2": 2, "3": 1, "4–6": 1, "6–10": 0, "10–20": 0, "20–50": 0, "≥50": 0}
    # a dropped table without representatives (days cleaned before them) has no clusters
    older = drift.Profiler(count_tokens=lambda texts: [1] * len(texts))
    older.add_dropped(reasons)
    assert older.profile.cluster_hist.sum() == 0 and older.profile.deduplicated == 8


def test_a_token_sample_is_evenly_spaced_across_batches():
    from llm_data_platform.lib import drift

    counted: list[str] = []

    def count(texts: list[str]) -> list[int]:
        counted.extend(texts)
        return [len(t.split()) for t in texts]

    profiler = drift.Profiler(count, token_share=0.1)
    for b in range(3):  # 3 batches of 95 messages and 5 feedback rows
        n = 100
        profiler.add_clean(
            pa.table(
                {
                    "event_type": ["message"] * 95 + ["feedback"] * 5,
                    "pii_redactions": pa.array([0] * n, pa.int32()),
                    "quality_score": pa.array([0.9] * 95 + [None] * 5, pa.float32()),
                    "content": [f"m{b}-{i} " * (1 + i % 3) for i in range(95)] + [None] * 5,
                }
            )
        )
    p = profiler.profile
    assert p.messages == 285 and p.received == 300
    assert len(counted) == 28  # floor(285 * 0.1): one message in ten, never a batch's all
    assert {t.split("-")[0] for t in counted} == {"m0", "m1", "m2"}
    assert p.token_hist.sum() == 28 and p.quality_hist.sum() == 285


def test_noise_allowance_keeps_small_days_quiet_and_big_shifts_loud():
    from llm_data_platform.lib import drift

    # 6% vs 3% on a 100-row day is within chance; on 100k rows it is drift
    small = drift.compare_rate(6, 100, 90, 3000, max_change=0.02)
    assert small.passed and small.allowance > 0.03
    big = drift.compare_rate(6000, 100_000, 9000, 300_000, max_change=0.02)
    assert not big.passed and big.verdict == "drift" and big.allowance < 0.01
    assert drift.compare_rate(0, 0, 5, 100, 0.02).verdict == "no rows today"

    rng = np.random.default_rng(7)
    edges = drift.TOKEN_EDGES
    base = drift.histogram(rng.lognormal(2.5, 0.8, 1400).round(), edges)
    same = drift.histogram(rng.lognormal(2.5, 0.8, 200).round(), edges)
    moved = drift.histogram(rng.lognormal(3.5, 0.8, 200).round(), edges)
    assert drift.compare_distribution(same, base, max_psi=0.2).passed
    shifted = drift.compare_distribution(moved, base, max_psi=0.2)
    assert not shifted.passed and shifted.value > 1.0
    assert drift.psi(base, base) == pytest.approx(0.0)


def test_thresholds_come_from_the_settings():
    from llm_data_platform.definitions import build_definitions

    settings = settings_for({"LDP_DRIFT_MAX_PSI": "0.3", "LDP_DRIFT_HISTORY_DAYS": "14"})
    (check,) = [
        c for c in build_definitions(settings).asset_checks
        if c.node_def.name == "conversations_clean_drift"
    ]  # fmt: skip
    bound = check.resource_defs["drift_settings"].config_schema.default_value
    assert bound["max_psi"] == 0.3 and bound["history_days"] == 14
    assert {k.name for k in check.check_keys} == set(DRIFT)
    assert all(not spec.blocking for spec in check.check_specs)
