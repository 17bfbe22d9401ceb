"""The loop both consumers share: poll -> add to the batch -> flush when full or old -> commit.

Commit order (the one place it is decided): the processor's flush makes the batch durable
(ClickHouse insert, dead letters produced, alerts produced) and returns; only then are the offsets
of exactly the records in that batch committed. A crash anywhere before the commit replays the
batch, and the processors are idempotent, so a replay stores nothing twice.

When the flush fails for an infrastructure reason (ClickHouse or Kafka down), the loop pauses every
partition and keeps polling (so the consumer stays in its group) while it retries with back-off;
nothing is committed until the retry succeeds; then it resumes the partitions it paused (not those a
processor paused for its own reasons). Bad *records* never reach this path: processors turn
them into dead letters. A rebalance that takes the partitions of a batch that cannot be stored drops
the batch and rewinds its partitions to its first records, for whichever member reads them next.

Pipelined (a processor that can `seal` a batch and `store` it apart, as the store consumer's): a full
batch is sealed and stored on a worker thread while the loop polls and decodes the next one, so the
insert's round trip and ClickHouse's work overlap the next batch's. One batch is in flight at a time:
the next is handed over only once the one before is stored and committed, since its dedup read and
chain links continue from what that one stored. The commit stays on the polling thread (kafka-python's
consumer is not thread-safe), and the order above holds batch by batch.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol, runtime_checkable

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import OffsetAndMetadata

log = logging.getLogger(__name__)


def tune_gc() -> None:
    """Call once a role process has loaded what it keeps (catalog, lexicon, codecs): a consumer allocates
    a few short-lived dicts per record, and CPython's defaults (a young collection every 700 allocations,
    full collections that walk every long-lived object again) cost the rule engine about a quarter of its
    time (docs/rules.md). What start-up loaded is frozen out of collections, and young collections run
    every 50,000 allocations; cyclic garbage is still collected."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 10)


class BatchProcessor(Protocol):
    def add(self, record: ConsumerRecord) -> None:
        """Take one record into the pending batch (decode, validate; bad input becomes a dead letter)."""
        ...

    def pending(self) -> int:
        ...

    def flush(self) -> None:
        """Make the pending batch durable, then forget it. Raise on infrastructure failure; the batch
        is kept and flush is called again."""
        ...

    def drop(self) -> None:
        """Forget the pending batch without storing it (its partitions were revoked)."""
        ...


@runtime_checkable
class SealingProcessor(BatchProcessor, Protocol):
    def seal(self) -> Any:
        """Take the pending batch out (pending() is 0 after): it is stored by `store`, and what is added
        meanwhile makes the next batch."""
        ...

    def store(self, sealed: Any) -> None:
        """Make a sealed batch durable (on a worker thread). Raise on infrastructure failure; it is called
        again with the same batch."""
        ...


@dataclass
class _Sealed:
    """A batch out of the processor and not committed yet: what to commit once it is durable, and the first
    offset of each of its partitions (where to read again if it is dropped)."""
    write: Callable[[], None]
    offsets: dict[TopicPartition, int]
    firsts: dict[TopicPartition, int]
    future: Future[None] | None = None  # while a worker stores it
    durable: bool = False

    def store(self) -> None:
        """Write it, once: after a commit that failed, the retry commits again and writes nothing."""
        if not self.durable:
            self.write()
            self.durable = True


class Backoff:
    def __init__(self, first_s: float = 0.5, max_s: float = 15.0) -> None:
        self.first_s, self.max_s, self.next_s = first_s, max_s, first_s

    def __call__(self) -> float:
        delay, self.next_s = self.next_s, min(self.next_s * 2, self.max_s)
        return delay

    def reset(self) -> None:
        self.next_s = self.first_s


class ConsumerLoop:
    def __init__(self, consumer: KafkaConsumer, processor: BatchProcessor, *, max_batch: int, max_wait_s: float,
                 infrastructure_errors: tuple[type[BaseException], ...], on_poll: Callable[[], None] = lambda: None,
                 commit_delay_s: float = 0.0, caught_up_batch: int | None = None, pipelined: bool = False) -> None:
        self.consumer = consumer
        self.processor = processor
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        # A batch of at least this many records is flushed as soon as a poll comes back empty (the consumer
        # has caught up: nothing will fill it sooner) instead of waiting out max_wait_s; None: never early.
        self.caught_up_batch = caught_up_batch
        self.infrastructure_errors = (*infrastructure_errors, KafkaError)
        self.on_poll = on_poll
        self.on_retry_poll: Callable[[], None] = lambda: None  # each poll while a failed flush waits (metrics)
        # runs when a poll brought records, before they are added
        self.before_records: Callable[[dict[TopicPartition, list[ConsumerRecord]]], None] = lambda records: None
        self.on_revoked: Callable[[list[TopicPartition]], None] = lambda revoked: None  # e.g. drop their gauges
        self.commit_delay_s = commit_delay_s  # fault-injection aid: widens the insert-to-commit window
        self._offsets: dict[TopicPartition, int] = {}  # next offset to commit, per partition in the batch
        self._first: dict[TopicPartition, int] = {}  # first offset of the batch, per partition
        self._batch_started: float | None = None
        self._unstored: _Sealed | None = None  # the batch sealed and not committed yet (in flight, or retried)
        # pipelined: the processor that seals batches, and the worker thread that stores them
        self._sealing: SealingProcessor | None = None
        self._worker: ThreadPoolExecutor | None = None
        if pipelined:
            if not isinstance(processor, SealingProcessor):
                raise TypeError(f"a pipelined loop needs a processor with seal() and store(): "
                                f"{type(processor).__name__}")
            self._sealing, self._worker = processor, ThreadPoolExecutor(1, thread_name_prefix="store-batch")
        self.failures = 0
        self._unreachable = Backoff(first_s=0.2, max_s=5.0)  # while Kafka cannot be reached
        self.join_warning_s = 60.0  # warn when the consumer has held no partition this long, and as often again
        self._unassigned_since: float | None = None
        self._next_join_warning = 0.0

    # kafka-python calls these from inside poll() during a rebalance
    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self._settle_or_drop()
        self.on_revoked(revoked)

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        # an eager rebalance revokes every partition first, which settles the batch in flight; a cooperative
        # one revokes only some, so one may still be in flight here
        if self._unstored is not None:
            self._settle_or_drop()
        log.info("assigned %s", sorted((tp.topic, tp.partition) for tp in assigned))

    def _settle_or_drop(self) -> None:
        """Store and commit what is read, now, once (a rebalance does not wait out a retry); if that fails,
        drop it and go back to its first records."""
        try:
            unstored = self._unstored
            if unstored is not None:
                if unstored.future is not None:
                    unstored.future.result()  # a worker's failure is raised here, and handled as any failure
                    unstored.future = None
                self._store_and_commit(unstored)
            if self.processor.pending():
                self._store_and_commit(self._seal())
        except Exception as exc:  # raised from here, kafka-python would report it as its own KafkaError
            log.warning("rebalance with an unstored batch (%s: %s): it will be read again",
                        type(exc).__name__, exc)
            self._drop_unstored()

    def _drop_unstored(self) -> None:
        """Forget every record read and not stored (no worker is storing any), rewinding to the first."""
        firsts = dict(self._first)
        if self._unstored is not None:
            for tp, first in self._unstored.firsts.items():
                firsts[tp] = min(first, firsts.get(tp, first))
        self._rewind(firsts)
        self.processor.drop()
        self._unstored = None
        self._forget_batch()

    def _rewind(self, firsts: dict[TopicPartition, int]) -> None:
        """Back to records read but not stored (the first of them per partition), so they are read again.
        A partition that moves to another member is read from its last commit there; one this member keeps
        through a rebalance keeps its fetch position (kafka-python carries a kept partition's state over),
        which is past them: without the rewind they would be skipped, and the next commit would pass them,
        so they would never be stored."""
        for tp, first in firsts.items():
            if tp in self.consumer.assignment():
                self.consumer.seek(tp, first)

    def run(self, should_stop: Callable[[], bool]) -> None:
        try:
            while not should_stop():
                self.step()
            self._drain(deadline_s=30)
        except BaseException:
            # what failed is not stored and must not be committed: leaving the group would try to flush it
            # again from the revoke callback, and kafka-python would replace the real error with its own
            self._abandon()
            raise
        finally:
            if self._worker is not None:
                self._worker.shutdown()
            self.consumer.close(autocommit=False)

    def step(self) -> None:
        records = self._poll(max_records=self.max_batch)
        if records:
            self.before_records(records)
        for tp, batch in records.items():
            if not batch:
                continue
            for record in batch:
                self.processor.add(record)
            self._offsets[tp] = batch[-1].offset + 1
            self._first.setdefault(tp, batch[0].offset)
            if self._batch_started is None:
                self._batch_started = time.monotonic()
        self._watch_assignment()
        self.on_poll()
        self._settle(wait=False)
        if self._batch_started is None and self.processor.pending():  # work added outside the records
            self._batch_started = time.monotonic()
        pending = self.processor.pending()
        full = pending >= self.max_batch
        old = self._batch_started is not None and time.monotonic() - self._batch_started >= self.max_wait_s
        caught_up = not records and self.caught_up_batch is not None and pending >= self.caught_up_batch
        if full or old or caught_up:
            self._flush()

    @property
    def storing(self) -> bool:
        """A worker is storing a batch (the processor's ClickHouse client is in use on its thread)."""
        return self._unstored is not None and self._unstored.future is not None and not self._unstored.future.done()

    def _flush(self) -> None:
        if self._worker is None:  # stored here, waiting
            self._store_with_retry(self._seal())
            return
        self._settle(wait=True)  # one batch in flight: the next continues from what it stored
        if self.processor.pending():  # unless a rebalance while the one before was retried dropped it
            sealed = self._seal()
            sealed.future = self._worker.submit(sealed.store)

    def _seal(self) -> _Sealed:
        """The pending batch as the batch not committed yet: the processor's, sealed (pipelined), or its
        pending batch, which its flush stores."""
        write = self.processor.flush if self._sealing is None else partial(self._sealing.store, self._sealing.seal())
        self._unstored = _Sealed(write, dict(self._offsets), dict(self._first))
        self._forget_batch()
        return self._unstored

    def _settle(self, wait: bool, deadline: float | None = None) -> None:
        """Commit the batch in flight once a worker has stored it (`wait`: wait for that); retry it here if
        it failed for an infrastructure reason; raise anything else."""
        unstored = self._unstored
        if unstored is None or unstored.future is None or not (wait or unstored.future.done()):
            return
        failure = unstored.future.exception()
        unstored.future = None
        if failure is not None and not isinstance(failure, self.infrastructure_errors):
            raise failure
        self._store_with_retry(unstored, failure, deadline)

    def _store_with_retry(self, sealed: _Sealed, failure: BaseException | None = None,
                          deadline: float | None = None) -> None:
        """Store and commit `sealed` (`failure`: its first attempt failed so), retrying with back-off while
        the partitions wait paused."""
        backoff = Backoff()
        held: set[TopicPartition] = set()  # paused here while the flush waits (not those paused by others)
        try:
            while True:
                if failure is None:
                    try:
                        self._store_and_commit(sealed)
                        return
                    except self.infrastructure_errors as exc:
                        failure = exc
                self.failures += 1
                delay = backoff()
                log.warning("flush failed (%s: %s); nothing committed, retrying in %.1fs",
                            type(failure).__name__, failure, delay)
                if deadline is not None and time.monotonic() + delay > deadline:
                    raise failure
                failure = None
                held |= self.consumer.assignment() - self.consumer.paused()
                self.consumer.pause(*held)
                until = time.monotonic() + delay
                while time.monotonic() < until:
                    self._put_back(self._poll(), held)  # paused: no records, but the group sees us alive
                    self.on_retry_poll()
                    if self._unstored is not sealed:  # a rebalance settled or dropped the batch meanwhile
                        return
        finally:
            # what the retry paused, and still holds; a partition paused by someone else (the rule
            # consumer's, waiting for its rebuild) stays paused
            if held & self.consumer.assignment():
                self.consumer.resume(*(held & self.consumer.assignment()))

    def _put_back(self, records: dict[TopicPartition, list[ConsumerRecord]], held: set[TopicPartition]) -> None:
        """Records a poll returned while a failed flush waits come from a partition assigned meanwhile (not
        paused yet): they are not taken now, so the partition goes back to the first of them and waits
        paused with the others."""
        returned = {tp: batch[0].offset for tp, batch in records.items() if batch}
        self._rewind(returned)
        if returned:
            self.consumer.pause(*returned)
            held.update(returned)

    def _watch_assignment(self) -> None:
        """A consumer without partitions stores or judges nothing, and it reports no lag that could show it:
        say so in the log while it lasts."""
        if self.consumer.assignment():
            self._unassigned_since = None
            return
        now = time.monotonic()
        if self._unassigned_since is None:
            self._unassigned_since, self._next_join_warning = now, now + self.join_warning_s
        elif now >= self._next_join_warning:
            self._next_join_warning = now + self.join_warning_s
            log.warning("no partition assigned in group %s for %.0fs: the group coordinator has not completed "
                        "the join (a member that died without leaving holds a rebalance until its session "
                        "times out), or the group has more members than the topics have partitions",
                        self.consumer.config["group_id"], now - self._unassigned_since)

    def _poll(self, max_records: int | None = None) -> dict[TopicPartition, list[ConsumerRecord]]:
        """One poll; while the broker or the group coordinator cannot be reached, a warning and a growing
        pause instead of an exception: the role outlives a broker outage and resumes when it ends."""
        try:
            records: dict[TopicPartition, list[ConsumerRecord]] = self.consumer.poll(timeout_ms=100,
                                                                                     max_records=max_records)
        except KafkaError as exc:
            delay = self._unreachable()
            log.warning("Kafka unreachable (%s: %s); polling again in %.1fs", type(exc).__name__, exc, delay)
            time.sleep(delay)
            return {}
        self._unreachable.reset()
        return records

    def _store_and_commit(self, sealed: _Sealed) -> None:
        sealed.store()
        offsets = {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in sealed.offsets.items()}
        if self.commit_delay_s:
            log.info("fault injection: batch durable, committing in %.1fs", self.commit_delay_s)
            time.sleep(self.commit_delay_s)
        try:
            if offsets:
                self.consumer.commit(offsets)
        except CommitFailedError as exc:  # the group moved on: the new owner replays, storage dedups
            log.warning("commit refused after a rebalance (%s); the batch will be replayed and deduplicated", exc)
        self._unstored = None

    def _forget_batch(self) -> None:
        self._offsets.clear()
        self._first.clear()
        self._batch_started = None

    def _abandon(self) -> None:
        """Forget everything read and not committed, once no worker is storing any of it."""
        if self._unstored is not None and self._unstored.future is not None:
            self._unstored.future.exception()  # waits; whatever it raised, the batch is not committed
        self.processor.drop()
        self._unstored = None
        self._forget_batch()

    def lag(self) -> dict[TopicPartition, int]:
        """Records not yet durable, per assigned partition: from the high-water mark of the last fetch
        (end_offsets is unreliable on Tansu) back to the first record not committed (of the batch in flight,
        or of the pending one), or to the position when the partition has nothing pending."""
        lags = {}
        unstored = self._unstored.firsts if self._unstored is not None else {}
        for tp in self.consumer.assignment():
            highwater = self.consumer.highwater(tp)
            if highwater is None:
                continue
            start = unstored.get(tp, self._first.get(tp))
            if start is None:
                try:
                    start = self.consumer.position(tp, timeout_ms=0)
                except KafkaError:
                    continue
            if start is not None:
                lags[tp] = max(0, highwater - start)
        return lags

    def _drain(self, deadline_s: float) -> None:
        deadline = time.monotonic() + deadline_s
        try:
            self._settle(wait=True, deadline=deadline)
            if self.processor.pending():
                self._store_with_retry(self._seal(), deadline=deadline)
        except self.infrastructure_errors as exc:
            log.error("stopping with an unstored batch (%s): it will be replayed at the next start", exc)
