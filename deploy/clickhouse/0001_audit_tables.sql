-- The audit trail. Released migrations are never edited: add the next numbered file instead
-- (`collection-audit migrate` refuses to run if an applied file changed).
--
-- Every trail table is a ReplacingMergeTree that the store consumer writes once per id (it checks
-- what is stored before inserting), partitioned by month of event time. Each row carries its
-- hash-chain link (chain_seq, prev_hash, row_hash: one chain per chain key and month, see
-- docs/tamper-evidence.md) and its provenance (Kafka topic, partition, offset, schema id).

CREATE DATABASE IF NOT EXISTS audit;

CREATE TABLE IF NOT EXISTS audit.actions
(
    event_id                UUID,
    occurred_at             DateTime64(6, 'UTC'),
    occurred_offset_minutes Int16,
    produced_at             DateTime64(6, 'UTC'),
    source_system           LowCardinality(String),
    agency_id               LowCardinality(String),
    debtor_id               String,
    account_id              String,
    collector_id            Nullable(String),
    action_type             LowCardinality(String),
    direction               LowCardinality(String),
    counterparty            LowCardinality(String),
    contact_address_hash    String COMMENT 'keyed hash of the address; never the address itself',
    contact_address_last4   String,
    message_text            String COMMENT 'phone, id and card numbers replaced by keyed-hash tokens',
    message_text_normalized String COMMENT 'Simplified Chinese, half-width, case-folded: for search',
    pii_redactions          UInt16,
    recording_id            Nullable(String),
    duration_seconds        Nullable(UInt32),
    call_result             LowCardinality(Nullable(String)),
    automated               Bool,
    staff_count             Nullable(UInt16),
    credentials_shown       Nullable(Bool),
    amount_due_minor        Nullable(Int64),
    currency                LowCardinality(Nullable(String)),
    due_date                Nullable(Date32),
    attributes              Map(String, String),
    jurisdiction            LowCardinality(String),
    debtor_timezone         LowCardinality(String),
    timezone_source         LowCardinality(String) COMMENT 'PROFILE, PHONE or DEFAULT',
    local_time              String COMMENT 'occurred_at in the debtor''s zone, RFC 3339',
    local_date              Date32,
    local_hour              UInt8,
    local_weekday           UInt8 COMMENT '1 = Monday ... 7 = Sunday',
    agency_license_status   LowCardinality(String),
    collector_cert_status   LowCardinality(String),
    out_of_order            Bool COMMENT 'arrived after a later action of the same debtor',
    chain_seq               UInt64,
    prev_hash               String,
    row_hash                String,
    kafka_topic             LowCardinality(String),
    kafka_partition         UInt16,
    kafka_offset            UInt64,
    schema_id               UInt32,
    ingested_at             DateTime64(6, 'UTC'),
    INDEX event_id_bloom event_id TYPE bloom_filter GRANULARITY 4,
    INDEX agency_set agency_id TYPE set(256) GRANULARITY 4,
    INDEX collector_bloom collector_id TYPE bloom_filter GRANULARITY 4
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (debtor_id, occurred_at, event_id);

CREATE TABLE IF NOT EXISTS audit.reference_events
(
    event_id                UUID,
    kind                    LowCardinality(String),
    occurred_at             DateTime64(6, 'UTC'),
    occurred_offset_minutes Int16,
    produced_at             DateTime64(6, 'UTC'),
    entity_key              String COMMENT 'the Kafka key: debtor, agency or collector id',
    source_system           Nullable(String),
    debtor_id               Nullable(String),
    account_id              Nullable(String),
    agency_id               Nullable(String),
    collector_id            Nullable(String),
    timezone                Nullable(String),
    phone_region            Nullable(String),
    jurisdiction            LowCardinality(Nullable(String)),
    channels                Array(String),
    contact_address_hash    String,
    contact_address_last4   String,
    counterparty            LowCardinality(Nullable(String)),
    complaint_id            Nullable(String),
    complex                 Bool,
    plan_id                 Nullable(String),
    status                  LowCardinality(Nullable(String)),
    valid_from              Nullable(DateTime64(6, 'UTC')),
    valid_to                Nullable(DateTime64(6, 'UTC')),
    attributes              Map(String, String),
    chain_seq               UInt64,
    prev_hash               String,
    row_hash                String,
    kafka_topic             LowCardinality(String),
    kafka_partition         UInt16,
    kafka_offset            UInt64,
    schema_id               UInt32,
    ingested_at             DateTime64(6, 'UTC'),
    INDEX event_id_bloom event_id TYPE bloom_filter GRANULARITY 4
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (entity_key, occurred_at, event_id);

CREATE TABLE IF NOT EXISTS audit.alerts
(
    alert_id        String,
    rule_id         LowCardinality(String),
    rule_version    UInt16,
    severity        LowCardinality(String),
    jurisdiction    LowCardinality(String),
    debtor_id       String,
    agency_id       LowCardinality(Nullable(String)),
    collector_id    Nullable(String),
    event_ids       Array(String),
    summary         String,
    citation        String,
    late            Bool,
    occurred_at     DateTime64(6, 'UTC'),
    detected_at     DateTime64(6, 'UTC'),
    evidence        Map(String, String),
    chain_seq       UInt64,
    prev_hash       String,
    row_hash        String,
    kafka_topic     LowCardinality(String),
    kafka_partition UInt16,
    kafka_offset    UInt64,
    schema_id       UInt32,
    ingested_at     DateTime64(6, 'UTC'),
    INDEX alert_id_bloom alert_id TYPE bloom_filter GRANULARITY 4
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (debtor_id, occurred_at, alert_id);

CREATE TABLE IF NOT EXISTS audit.dead_letters
(
    dead_letter_id   UUID COMMENT 'derived from consumer group, topic, partition and offset',
    reason           LowCardinality(String),
    detail           String,
    consumer_group   LowCardinality(String),
    source_topic     LowCardinality(String),
    source_partition UInt16,
    source_offset    UInt64,
    schema_id        Nullable(UInt32),
    raw_key_base64   String,
    raw_value_base64 String COMMENT 'the record as received: may hold clear PII, admin access only',
    failed_at        DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(failed_at)
ORDER BY (source_topic, source_partition, source_offset, consumer_group);
