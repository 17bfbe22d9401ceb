"""The auditor's questions as SQL with bound parameters: lists, a debtor's timeline, reports.

Every value a caller supplies travels as a ClickHouse query parameter (`{name:Type}`), never as SQL
text; the only text that varies is chosen from the fixed fragments below. Lists read with FINAL, so a
redelivered event never appears twice, and page with a keyset cursor on their sort key.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

MAX_RANGE = timedelta(days=400)
DEFAULT_RANGE = timedelta(days=90)
MAX_PAGE = 1_000
MAX_EXPORT_ROWS = 1_000_000
MAX_REPORT_ROWS = 100_000  # per JSON answer; a download holds up to MAX_EXPORT_ROWS
DEFAULT_REPORT_ROWS = 1_000
SEVERITIES = ("LOW", "MEDIUM", "HIGH", "CRITICAL")
MIN_MOMENT, MAX_MOMENT = datetime(1900, 1, 1, tzinfo=UTC), datetime(2262, 4, 11, tzinfo=UTC)  # DateTime64(6)
# FINAL per partition: an event_id's copies share occurred_at, so they share a month partition
FINAL_SETTINGS = {"do_not_merge_across_partitions_select_final": 1}


class QueryError(ValueError):
    """A request the API refuses with a clear message (HTTP 422)."""


@dataclass(frozen=True)
class Filters:
    start: datetime
    end: datetime
    agency: str | None = None
    collector: str | None = None
    debtor: str | None = None
    rule: str | None = None
    severity: str | None = None
    action_type: str | None = None
    reason: str | None = None

    @classmethod
    def build(cls, start: datetime | None, end: datetime | None, **values: str | None) -> Filters:
        end = _in_range("to", end) if end else datetime.now(UTC)
        start = _in_range("from", start) if start else max(end - DEFAULT_RANGE, MIN_MOMENT)
        if start >= end:
            raise QueryError(f"'from' ({start.isoformat()}) must be before 'to' ({end.isoformat()})")
        if end - start > MAX_RANGE:
            raise QueryError(f"the range from {start.date()} to {end.date()} is {(end - start).days} days; "
                             f"at most {MAX_RANGE.days} days per request: narrow 'from'/'to'")
        for name, value in values.items():
            if value is not None and (len(value) > 128 or not value.isprintable()):
                raise QueryError(f"'{name}' must be at most 128 printable characters")
        severity = values.get("severity")
        if severity is not None and severity not in SEVERITIES:
            raise QueryError(f"'severity' must be one of {', '.join(SEVERITIES)}")
        return cls(start, end, **{k: v or None for k, v in values.items()})


def _in_range(name: str, moment: datetime) -> datetime:
    try:
        moment = _utc(moment)
    except OverflowError:  # year 1 or 9999 with an offset
        moment = MIN_MOMENT - timedelta(days=1)
    if not MIN_MOMENT <= moment < MAX_MOMENT:
        raise QueryError(f"'{name}' must be between {MIN_MOMENT.date()} and {MAX_MOMENT.date()}")
    return moment


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True)
class Sql:
    text: str
    parameters: dict[str, Any] = field(default_factory=dict)
    settings: Mapping[str, Any] = field(default_factory=lambda: FINAL_SETTINGS)


@dataclass(frozen=True)
class Listing:
    """A paged list: its table, sort key (time column, id column) and the filters it accepts."""

    table: str
    time_column: str
    id_column: str
    id_type: str
    columns: tuple[str, ...]
    filters: Mapping[str, str]  # filter name -> column
    final: bool = True


ACTIONS = Listing("audit.actions", "occurred_at", "event_id", "UUID", (
    "event_id", "occurred_at", "local_time", "jurisdiction", "debtor_id", "agency_id", "collector_id",
    "action_type", "direction", "counterparty", "contact_address_last4", "message_text", "duration_seconds",
    "call_result", "automated", "agency_license_status", "collector_cert_status", "out_of_order", "chain_seq",
), {"agency": "agency_id", "collector": "collector_id", "debtor": "debtor_id", "action_type": "action_type"})
ALERTS = Listing("audit.alerts", "occurred_at", "alert_id", "String", (
    "alert_id", "occurred_at", "detected_at", "rule_id", "rule_version", "severity", "jurisdiction", "debtor_id",
    "agency_id", "collector_id", "summary", "citation", "late", "event_ids",
), {"agency": "agency_id", "collector": "collector_id", "debtor": "debtor_id", "rule": "rule_id",
    "severity": "severity"})
DEAD_LETTERS = Listing("audit.dead_letters", "failed_at", "dead_letter_id", "UUID", (
    "dead_letter_id", "failed_at", "reason", "detail", "consumer_group", "source_topic", "source_partition",
    "source_offset", "schema_id",
), {"reason": "reason"})
DEAD_LETTER_PAYLOADS = ("raw_key_base64", "raw_value_base64")
ACCESS_LOG = Listing("audit.access_log", "at", "request_id", "UUID", (
    "request_id", "at", "token_name", "role", "method", "path", "query", "status", "rows", "duration_ms", "client",
), {}, final=False)
LISTINGS = {"actions": ACTIONS, "alerts": ALERTS, "dead-letters": DEAD_LETTERS, "access-log": ACCESS_LOG}


def encode_cursor(moment: datetime, row_id: Any) -> str:
    payload = json.dumps([_utc(moment).isoformat(), str(row_id)]).encode()
    return base64.urlsafe_b64encode(payload).decode().rstrip("=")


def decode_cursor(cursor: str, id_type: str = "String") -> tuple[datetime, str]:
    """The sort key a cursor carries, checked as the query will bind it (a forged cursor is a 422)."""
    try:
        moment, row_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        moment = _in_range("cursor", datetime.fromisoformat(moment))
        row_id = str(uuid.UUID(row_id)) if id_type == "UUID" else str(row_id)
        if not row_id.isprintable() or len(row_id) > 128:
            raise ValueError
        return moment, row_id
    except (ValueError, TypeError, AttributeError):
        raise QueryError("'cursor' is not one this API returned") from None


def _where(listing: Listing, filters: Filters, parameters: dict[str, Any]) -> list[str]:
    parameters.update(start=filters.start, end=filters.end)
    where = [f"{listing.time_column} >= {{start:DateTime64(6, 'UTC')}}",
             f"{listing.time_column} < {{end:DateTime64(6, 'UTC')}}"]
    for name, column in listing.filters.items():
        value = getattr(filters, name.replace("-", "_"))
        if value is not None:
            where.append(f"{column} = {{{name}:String}}")
            parameters[name] = value
    return where


def list_query(listing: Listing, filters: Filters, *, limit: int | None, cursor: str | None = None,
               extra_columns: tuple[str, ...] = ()) -> Sql:
    """Rows of `listing` in time order; `limit` None for an export (capped by the caller)."""
    parameters: dict[str, Any] = {}
    where = _where(listing, filters, parameters)
    if cursor:
        moment, row_id = decode_cursor(cursor, listing.id_type)
        where.append(f"({listing.time_column}, {listing.id_column}) > "
                     f"({{cursor_time:DateTime64(6, 'UTC')}}, {{cursor_id:{listing.id_type}}})")
        parameters.update(cursor_time=moment, cursor_id=row_id)
    columns = ", ".join(listing.columns + extra_columns)
    text = (f"SELECT {columns} FROM {listing.table}{' FINAL' if listing.final else ''} "
            f"WHERE {' AND '.join(where)} ORDER BY {listing.time_column}, {listing.id_column}")
    if limit is not None:
        text += f" LIMIT {int(limit)}"
    return Sql(text, parameters)


def count_query(sql: Sql) -> Sql:
    return Sql(f"SELECT count() FROM ({sql.text})", sql.parameters, sql.settings)


TIMELINE_COLUMNS = ("kind", "id", "occurred_at", "local_time", "type", "channel", "agency_id", "collector_id",
                    "text", "severity", "detail")


def timeline_query(debtor: str, filters: Filters, *, limit: int | None, cursor: str | None = None) -> Sql:
    """Actions, reference events and alerts of one debtor, merged in event time, with debtor-local
    times (reference events and alerts in the zone of the debtor's latest stored action)."""
    parameters: dict[str, Any] = {"debtor": debtor, "start": filters.start, "end": filters.end}
    window = "occurred_at >= {start:DateTime64(6, 'UTC')} AND occurred_at < {end:DateTime64(6, 'UTC')}"
    zone = ("(SELECT ifNull(argMax(debtor_timezone, occurred_at), 'UTC') FROM audit.actions "
            "WHERE debtor_id = {debtor:String})")
    local = f"formatDateTime(toTimeZone(occurred_at, {zone}), '%Y-%m-%d %H:%i:%S')"
    union = f"""
        SELECT 'action' AS kind, toString(event_id) AS id, occurred_at,
               replaceOne(substring(local_time, 1, 19), 'T', ' ') AS local_time,
               action_type AS type, concat(direction, ' ', counterparty) AS channel, agency_id,
               collector_id, message_text AS text, '' AS severity,
               concat('last4 ', contact_address_last4, if(isNull(call_result), '', concat(' · ', call_result)),
                      ' · licence ', agency_license_status, ' · cert ', collector_cert_status) AS detail
        FROM audit.actions FINAL WHERE debtor_id = {{debtor:String}} AND {window}
        UNION ALL
        SELECT 'reference', toString(event_id), occurred_at, {local}, toString(kind), '',
               agency_id, collector_id, '', '',
               concat(ifNull(status, ''), if(isNull(complaint_id), '', concat(' complaint ', complaint_id)),
                      if(isNull(plan_id), '', concat(' plan ', plan_id)))
        FROM audit.reference_events FINAL
        WHERE (entity_key = {{debtor:String}} OR debtor_id = {{debtor:String}}) AND {window}
        UNION ALL
        SELECT 'alert', alert_id, occurred_at, {local}, rule_id, '', agency_id, collector_id, summary, severity,
               citation
        FROM audit.alerts FINAL WHERE debtor_id = {{debtor:String}} AND {window}"""
    where = ""
    if cursor:
        moment, row_id = decode_cursor(cursor)
        where = "WHERE (occurred_at, id) > ({cursor_time:DateTime64(6, 'UTC')}, {cursor_id:String})"
        parameters.update(cursor_time=moment, cursor_id=row_id)
    text = (f"SELECT {', '.join(TIMELINE_COLUMNS)} FROM ({union}) {where} ORDER BY occurred_at, id"
            + (f" LIMIT {int(limit)}" if limit is not None else ""))
    return Sql(text, parameters)


# ---- reports ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Report:
    name: str
    title: str
    description: str
    filters: tuple[str, ...]


REPORTS = {r.name: r for r in (
    Report("contacts-per-day", "Contacts per debtor per local day",
           "Outbound conversations with each debtor per debtor-local day against the daily cap of the debtor's "
           "jurisdiction (DAILY_CONTACT_CAP); busiest days first. The rule's alerts are the verdict of record.",
           ("agency", "debtor")),
    Report("alerts-by-rule", "Alerts by rule, agency and month",
           "Alerts raised per rule, agency and month of the event, split by severity.", ("agency", "rule")),
    Report("collector-league", "Collector league table",
           "Alerts per 1,000 actions for each collector, worst first (collectors with at least one action).",
           ("agency",)),
    Report("complaint-sla", "Complaint handling against the deadline",
           "Each complaint filed in the range: filed, resolved, the deadline (15 days, 30 if complex) and its "
           "status now.", ("agency", "debtor")),
    Report("quiet-hours", "Contacts by debtor-local hour and weekday",
           "Outbound contacts per debtor-local hour (0-23) and weekday (1 = Monday), with the quiet-hours alerts "
           "among them: the heat map of when debtors are contacted.", ("agency",)),
)}


def report_query(name: str, filters: Filters, caps: Mapping[str, int], *, limit: int | None) -> Sql:
    """The report's rows, most telling first; `limit` None for a download (one more row is asked for,
    so the caller can say the answer was cut)."""
    parameters: dict[str, Any] = {"start": filters.start, "end": filters.end}
    window = "occurred_at >= {start:DateTime64(6, 'UTC')} AND occurred_at < {end:DateTime64(6, 'UTC')}"

    def also(column: str, name: str) -> str:
        value = getattr(filters, name)
        if value is None:
            return ""
        parameters[name] = value
        return f" AND {column} = {{{name}:String}}"

    if name == "contacts-per-day":
        parameters["caps_jurisdictions"] = list(caps)
        parameters["caps_values"] = [int(v) for v in caps.values()]
        text = f"""
            SELECT debtor_id, local_date, any(jurisdiction) AS jurisdiction,
                   countIf(action_type = 'CALL_CONNECTED' AND counterparty = 'DEBTOR') AS conversations,
                   countIf(action_type IN ('CALL_ATTEMPT', 'CALL_CONNECTED', 'VOICEMAIL')) AS outbound_calls,
                   count() AS outbound_contacts,
                   transform(jurisdiction, {{caps_jurisdictions:Array(String)}}, {{caps_values:Array(Int64)}},
                             toInt64(-1)) AS cap,
                   cap >= 0 AND conversations > cap AS over_cap
            FROM audit.actions FINAL
            WHERE direction = 'OUTBOUND' AND {window}{also('agency_id', 'agency')}{also('debtor_id', 'debtor')}
            GROUP BY debtor_id, local_date
            ORDER BY over_cap DESC, conversations DESC, outbound_contacts DESC, debtor_id, local_date"""
    elif name == "alerts-by-rule":
        text = f"""
            SELECT toStartOfMonth(occurred_at) AS month, rule_id, ifNull(agency_id, '') AS agency_id,
                   count() AS alerts, countIf(severity = 'CRITICAL') AS critical, countIf(severity = 'HIGH') AS high,
                   countIf(severity = 'MEDIUM') AS medium, countIf(severity = 'LOW') AS low
            FROM audit.alerts FINAL
            WHERE {window}{also('agency_id', 'agency')}{also('rule_id', 'rule')}
            GROUP BY month, rule_id, agency_id ORDER BY month, alerts DESC, rule_id, agency_id"""
    elif name == "collector-league":
        agency = also("agency_id", "agency")
        text = f"""
            SELECT a.agency_id AS agency_id, a.collector_id AS collector_id, a.actions AS actions,
                   ifNull(r.alerts, 0) AS alerts, round(1000 * alerts / actions, 2) AS alerts_per_1000_actions,
                   ifNull(r.worst, '') AS most_frequent_rule
            FROM (SELECT agency_id, assumeNotNull(collector_id) AS collector_id, count() AS actions
                  FROM audit.actions FINAL WHERE isNotNull(collector_id) AND {window}{agency}
                  GROUP BY agency_id, collector_id) AS a
            LEFT JOIN (SELECT assumeNotNull(collector_id) AS collector_id, count() AS alerts,
                              topK(1)(rule_id)[1] AS worst
                       FROM audit.alerts FINAL WHERE isNotNull(collector_id) AND {window}{agency}
                       GROUP BY collector_id) AS r ON a.collector_id = r.collector_id
            ORDER BY alerts_per_1000_actions DESC, actions DESC, agency_id, collector_id"""
    elif name == "complaint-sla":
        filed_filter = also("ifNull(agency_id, '')", "agency") + also("ifNull(debtor_id, entity_key)", "debtor")
        text = f"""
            SELECT f.complaint_id AS complaint_id, f.debtor AS debtor_id, f.agency AS agency_id, f.filed_at AS filed_at,
                   f.complex AS complex, f.filed_at + toIntervalDay(if(f.complex, 30, 15)) AS due_at,
                   r.resolved_at AS resolved_at,
                   multiIf(isNull(r.resolved_at) AND now64(6) > due_at, 'OVERDUE', isNull(r.resolved_at), 'OPEN',
                           r.resolved_at <= due_at, 'RESOLVED_IN_TIME', 'RESOLVED_LATE') AS status
            FROM (SELECT assumeNotNull(complaint_id) AS complaint_id, any(ifNull(debtor_id, entity_key)) AS debtor,
                         any(ifNull(agency_id, '')) AS agency, min(occurred_at) AS filed_at, max(complex) AS complex
                  FROM audit.reference_events FINAL
                  WHERE kind = 'COMPLAINT_FILED' AND isNotNull(complaint_id) AND {window}{filed_filter}
                  GROUP BY complaint_id) AS f
            LEFT JOIN (SELECT assumeNotNull(complaint_id) AS complaint_id, min(occurred_at) AS resolved_at
                       FROM audit.reference_events FINAL
                       WHERE kind = 'COMPLAINT_RESOLVED' AND isNotNull(complaint_id)
                       GROUP BY complaint_id) AS r ON f.complaint_id = r.complaint_id
            ORDER BY status = 'OVERDUE' DESC, status = 'RESOLVED_LATE' DESC, filed_at"""
    elif name == "quiet-hours":
        agency = also("agency_id", "agency")
        text = f"""
            SELECT c.local_weekday AS weekday, c.local_hour AS hour, c.contacts AS contacts,
                   ifNull(q.alerts, 0) AS quiet_hours_alerts
            FROM (SELECT local_weekday, local_hour, count() AS contacts FROM audit.actions FINAL
                  WHERE direction = 'OUTBOUND' AND {window}{agency} GROUP BY local_weekday, local_hour) AS c
            LEFT JOIN (SELECT toUInt8(toDayOfWeek(toDateTime(a.local_time_utc))) AS local_weekday,
                              toUInt8(toHour(toDateTime(a.local_time_utc))) AS local_hour, count() AS alerts
                       FROM (SELECT parseDateTime64BestEffort(substring(evidence['local_time'], 1, 19)) AS
                                    local_time_utc
                             FROM audit.alerts FINAL
                             WHERE rule_id = 'QUIET_HOURS' AND {window}{agency}) AS a
                       GROUP BY local_weekday, local_hour) AS q
              ON c.local_weekday = q.local_weekday AND c.local_hour = q.local_hour
            ORDER BY weekday, hour"""
    else:
        raise QueryError(f"no report {name!r}; reports: {', '.join(REPORTS)}")
    return Sql(" ".join(text.split()) + (f" LIMIT {int(limit) + 1}" if limit is not None else ""), parameters)
