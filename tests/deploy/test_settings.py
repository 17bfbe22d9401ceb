from pathlib import Path

import pytest

from deploy.settings import Settings, SettingsError, load_settings
from deploy.topics import load_topic_specs


def test_defaults_point_at_the_embedded_stack() -> None:
    settings = load_settings({})
    assert settings.embedded_broker and settings.bootstrap_servers == "127.0.0.1:19092"
    assert settings.data_dir == Path(".collection-audit")


def test_standard_and_prefixed_names_are_read() -> None:
    settings = load_settings({"KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9092", "COLLECTION_AUDIT_HTTP_PORT": "9000",
                              "SCHEMA_REGISTRY_URL": "http://registry:8081", "UNRELATED": "x"})
    assert not settings.embedded_broker
    assert settings.kafka_client_config()["bootstrap_servers"] == ["k1:9092", "k2:9092"]
    assert settings.http_port == 9000 and settings.schema_registry_url == "http://registry:8081"


def test_an_unknown_setting_is_an_error_that_lists_the_known_ones() -> None:
    with pytest.raises(SettingsError, match=r"unknown setting COLLECTION_AUDIT_HTTP_PROT.*COLLECTION_AUDIT_HTTP_PORT"):
        load_settings({"COLLECTION_AUDIT_HTTP_PROT": "9000"})


def test_a_malformed_value_is_an_error() -> None:
    with pytest.raises(SettingsError, match="expected int"):
        load_settings({"COLLECTION_AUDIT_HTTP_PORT": "eighty"})


def test_settings_are_frozen_and_flags_override() -> None:
    settings = Settings()
    with pytest.raises(AttributeError):
        settings.http_port = 1  # type: ignore[misc]
    assert settings.replace(http_port=1, kafka_port=None).http_port == 1


def test_sasl_settings_reach_the_kafka_clients_and_the_password_is_not_printed() -> None:
    settings = load_settings({"COLLECTION_AUDIT_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                              "COLLECTION_AUDIT_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                              "COLLECTION_AUDIT_KAFKA_SASL_USERNAME": "writer",
                              "COLLECTION_AUDIT_KAFKA_SASL_PASSWORD": "s3cret"})
    config = settings.kafka_client_config()
    assert config["security_protocol"] == "SASL_SSL" and config["sasl_plain_password"] == "s3cret"
    assert "s3cret" not in repr(settings)


def test_actions_and_reference_topics_are_co_partitioned() -> None:
    specs = {s.name: s for s in load_topic_specs()}
    assert specs["collection.actions"].partitions == specs["collection.reference"].partitions
    assert set(specs) == {"collection.actions", "collection.reference", "collection.alerts", "collection.dlq"}
