"""KRaft cluster ids the local stack makes are ones Kafka's storage tool accepts."""

from __future__ import annotations

import base64

from dev.servers.kafka import new_cluster_id


def test_cluster_ids_never_start_with_a_dash() -> None:
    # One random id in 64 starts with "-", which `kafka-storage format -t` reads as an option;
    # 5,000 draws would meet one all but certainly (1 - (63/64) ** 5000 ≈ 1 - 1e-34).
    ids = [new_cluster_id() for _ in range(5000)]
    assert not [i for i in ids if i.startswith("-")]
    assert all(len(base64.urlsafe_b64decode(i + "==")) == 16 for i in ids)
    assert len(set(ids)) == len(ids)
