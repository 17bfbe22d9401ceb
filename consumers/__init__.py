"""Consumers: the store consumer (enrich, hash-chain, write ClickHouse) and the rule consumer (alerts)."""
