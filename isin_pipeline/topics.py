"""``isin-pipeline topics create|check``: the one explicit way the pipeline's topics come to be.

Every topic of the producer, the scheduler and the stream app, with its partition count and
configs from the same environment the commands read. No client creates a topic by itself
(``allow.auto.create.topics=false``, and aiokafka patched to ask for none), so a topic lost with
an embedded broker's restart comes back with its configured partitions, not a default.
"""

from __future__ import annotations

import argparse
import json

from core.kafka.topics import TopicSpec, check_topics, ensure_topics
from scheduler.settings import SchedulerSettings
from stream_app.settings import StreamSettings


def all_topics(producer: SchedulerSettings, stream: StreamSettings) -> list[TopicSpec]:
    out: dict[str, TopicSpec] = {}
    for spec in [*producer.topics(), *stream.topics()]:
        out.setdefault(spec.name, spec)
    return list(out.values())


def create_all(bootstrap: str | None = None) -> list[str]:
    """Create the missing topics (for the embedded broker and the demo); the names created."""
    where = {"kafka_bootstrap_servers": bootstrap} if bootstrap else {}
    producer = SchedulerSettings(**where)  # type: ignore[arg-type]
    return ensure_topics(producer, all_topics(producer, StreamSettings(**where)))  # type: ignore[arg-type]


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "topics",
        help="create or check the pipeline's topics",
        description="Create every topic of the pipeline with its configured partitions and configs "
        "(TOPIC_* and APP_ID settings), or check that they exist as configured. Clients never create "
        "topics themselves: run this once per cluster, and after an embedded broker restarted empty.",
    )
    p.add_argument("action", choices=["create", "check"], help="create the missing topics, or only check them")
    p.set_defaults(func=cmd_topics)


def cmd_topics(args: argparse.Namespace) -> int:
    producer = SchedulerSettings()
    specs = all_topics(producer, StreamSettings())
    if args.action == "check":
        check_topics(producer, specs)
        created: list[str] = []
    else:
        created = ensure_topics(producer, specs)
    print(
        json.dumps(
            {
                "bootstrap": producer.kafka_bootstrap_servers,
                "created": created,
                "topics": {s.name: {"partitions": s.partitions, **dict(s.config)} for s in specs},
            }
        )
    )
    return 0
