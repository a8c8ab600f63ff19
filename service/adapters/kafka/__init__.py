"""Kafka at the edge: the broker, the topics, the consumer, the outbox publisher, the output
follower and the dead-letter replay, one file each."""
