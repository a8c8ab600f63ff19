"""The FastStream broker and how every producer and consumer of the service connects."""

from __future__ import annotations

import logging
import ssl
from typing import Any

from faststream.kafka import KafkaBroker
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from service.settings import Settings


def security_from(settings: Settings) -> BaseSecurity | None:
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = None
    if protocol in {"SSL", "SASL_SSL"}:
        context = ssl.create_default_context(cafile=settings.kafka_ssl_cafile)
    if protocol == "SSL":
        return BaseSecurity(ssl_context=context, use_ssl=True)
    username = settings.kafka_sasl_username or ""
    password = (
        settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else ""
    )
    use_ssl = protocol == "SASL_SSL"
    mechanism = settings.kafka_sasl_mechanism or "PLAIN"
    if mechanism == "SCRAM-SHA-256":
        return SASLScram256(username, password, ssl_context=context, use_ssl=use_ssl)
    if mechanism == "SCRAM-SHA-512":
        return SASLScram512(username, password, ssl_context=context, use_ssl=use_ssl)
    return SASLPlaintext(username, password, ssl_context=context, use_ssl=use_ssl)


# How every producer of the service sends (FastStream's and the outbox publisher's own).
PRODUCER_OPTIONS: dict[str, Any] = {
    "client_id": "campaign-ledger",
    # Snapshots and dead letters must not be lost or reordered by producer retries.
    "acks": "all",
    "enable_idempotence": True,
    # No lingering: a batch's messages are all handed over before the sender runs, so they
    # leave in one request anyway; 5 ms of linger was 5 ms on every live event.
    "linger_ms": 0,
    # zstd, not lz4: aiokafka compresses lz4 at level 9 (LZ4HC), which took ~7 % of the
    # service's CPU with every revision published; zstd at its level 3 is faster and smaller.
    # Every mainstream client reads both (the contract lists all four codecs).
    "compression_type": "zstd",
    # Up to 512 KiB per partition in one produce request: a batch publishing thousands of
    # snapshot revisions costs the broker tens of requests, not hundreds.
    "max_batch_size": 512 * 1024,
}


def build_broker(settings: Settings) -> KafkaBroker:
    return KafkaBroker(
        # A list: FastStream takes one string as one address, "a:9092,b:9092" included.
        settings.kafka_servers,
        security=security_from(settings),
        **PRODUCER_OPTIONS,
        # broker.stop() waits this long for the batch in flight (the shutdown budget).
        graceful_timeout=settings.kafka_shutdown_timeout_seconds,
        # Our logger, so FastStream's lines go through the structured handler; its per-batch
        # "Received"/"Processed" lines at DEBUG, where they belong at this rate.
        logger=logging.getLogger("campaign_ledger.kafka"),
        log_level=logging.DEBUG,
        description="campaign-ledger: versioned, audited memory of AI-generated campaigns",
    )
