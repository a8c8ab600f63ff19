"""Real Apache Kafka (KRaft) and SecantusDB as local processes, without Docker.

One module a server, on a shared base:

* ``common``: paths, free ports, waiting for a server, ``StackError``.
* ``process``: ``LocalServer``, a server run as a child process with a pid and a log file.
* ``jvm``: the JDK, and jar sets (Kafka's) resolved from a pom with Maven.
* ``kafka``: ``KafkaServer`` (one KRaft node), SASL/SCRAM (``KafkaAuth``), extra listeners
  (``KafkaListener``), ``grant_acls()``.
* ``kafka_cluster``: ``KafkaCluster``, three KRaft nodes from the same jars.
* ``mongo``: ``MongoServer``, SecantusDB, a MongoDB wire-protocol server on WiredTiger.

Test fixtures (``tests/servers.py``) start them on free ports with data in a pytest tmp
dir and ``kill()``/``restart()`` them for crash tests; ``python -m dev.stack`` runs them on
fixed ports for ``make run`` and CI. Only the standard library plus pymongo and aiokafka
(for readiness checks) are used.
"""
