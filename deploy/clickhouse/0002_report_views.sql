-- Report views. They read with FINAL, so a redelivered event never counts twice.

CREATE VIEW IF NOT EXISTS audit.contacts_per_debtor_day AS
SELECT
    debtor_id,
    local_date,
    any(jurisdiction)                                       AS jurisdiction,
    any(debtor_timezone)                                    AS debtor_timezone,
    countIf(action_type = 'CALL_CONNECTED')                 AS conversations,
    countIf(direction = 'OUTBOUND' AND action_type IN
            ('CALL_ATTEMPT', 'CALL_CONNECTED', 'VOICEMAIL')) AS outbound_calls,
    countIf(direction = 'OUTBOUND')                         AS outbound_contacts,
    count()                                                 AS actions
FROM audit.actions FINAL
GROUP BY debtor_id, local_date;

CREATE VIEW IF NOT EXISTS audit.contacts_per_collector_day AS
SELECT
    agency_id,
    ifNull(collector_id, '(automated)')                     AS collector,
    toDate(occurred_at)                                     AS day_utc,
    countIf(action_type = 'CALL_CONNECTED')                 AS conversations,
    countIf(direction = 'OUTBOUND')                         AS outbound_contacts,
    uniqExact(debtor_id)                                    AS debtors,
    count()                                                 AS actions
FROM audit.actions FINAL
GROUP BY agency_id, collector, day_utc;
