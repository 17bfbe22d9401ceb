import random

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from consumers.metrics import BatchHistogram

BUCKETS = (0.05, 0.1, 0.5, 1, 2.5, 10)


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(generate_latest(registry).decode())
            for s in family.samples if not s.name.endswith("_created")}


def test_a_batch_histogram_is_exposed_as_a_histogram_observed_value_by_value() -> None:
    rng = random.Random(3)
    values = [rng.choice((0.0, 0.05, 0.1, 1.0, 10.0, 11.0)) if rng.random() < 0.3 else rng.uniform(0, 12)
              for _ in range(2_000)]  # the bounds themselves included: a bucket counts values <= its bound
    expected, got = CollectorRegistry(), CollectorRegistry()
    histogram = Histogram("latency_seconds", "doc", ["table"], buckets=BUCKETS, registry=expected)
    batched = BatchHistogram("latency_seconds", "doc", "table", BUCKETS, got)
    for value in values:
        histogram.labels("a" if value < 6 else "b").observe(value)
    for start in range(0, len(values), 300):
        chunk = values[start:start + 300]
        batched.observe_many("a", [v for v in chunk if v < 6])
        batched.observe_many("b", [v for v in chunk if v >= 6])
    want, have = samples(expected), samples(got)
    assert want.keys() == have.keys()
    for key, value in want.items():
        assert abs(have[key] - value) <= 1e-9 * max(1.0, abs(value)), key  # sums add in another order
