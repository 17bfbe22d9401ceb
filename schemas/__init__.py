"""The Avro contract: schema files, the catalog of schema ids, the codec and the JSON contract."""

TOPIC_ACTIONS = "collection.actions"
TOPIC_REFERENCE = "collection.reference"
TOPIC_ALERTS = "collection.alerts"
TOPIC_DLQ = "collection.dlq"


def value_subject(topic: str) -> str:
    """Confluent TopicNameStrategy: the subject that holds the schemas of a topic's values."""
    return f"{topic}-value"
