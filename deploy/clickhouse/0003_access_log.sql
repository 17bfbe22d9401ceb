-- Every request to the auditor API, allowed or refused: who, when, what they asked, how it ended and
-- how many rows it returned. Written by the API itself before the response completes; nothing
-- in the API can read it except an admin token.

CREATE TABLE IF NOT EXISTS audit.access_log
(
    request_id  UUID,
    at          DateTime64(6, 'UTC'),
    token_name  LowCardinality(String) COMMENT 'empty when no valid token was presented',
    role        LowCardinality(String),
    method      LowCardinality(String),
    path        String,
    query       String COMMENT 'the query parameters as sent, JSON',
    status      UInt16,
    rows        UInt64,
    duration_ms Float32,
    client      String COMMENT 'peer address'
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(at)
ORDER BY (at, request_id);
