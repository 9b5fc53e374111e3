"""``isin-pipeline replay``: move a consumer group's committed offsets, through the admin API.

*Replay* moves offsets and nothing else: the group's consumers, started again, re-read the
topic from there. It reads and writes no record. Not to be confused with *rebuild*
(``ops/rebuild.py``: the table recomputed from the raw topic, the compacted topic repaired) or
with *reindex* (``stream_app/reindex.py``: a running worker re-reading one run's keys from the
raw topic for one end-of-run sweep).

The group must be idle: Kafka itself rejects offset changes for a group with live members,
and we check first so that the message says what to do.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Mapping
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from rich.table import Table

from core.console import table_console
from core.errors import BrokerError, ConfigError, PipelineError
from core.kafka import KafkaSettings, new_admin
from core.kafka.errors import kafka_error
from core.kafka.offsets import end_offsets, offsets_for_timestamp
from ops.client import TopicReader
from ops.downstream import parse_offsets, topic_name
from ops.timestamps import parse_timestamp

logger = logging.getLogger(__name__)

IDLE_STATES = {"EMPTY", "DEAD"}


class GroupActiveError(PipelineError):
    pass


def group_state(admin: AdminClient, group: str) -> tuple[str, int]:
    """(state, members) of a consumer group. A group that never existed is DEAD."""
    try:
        desc = admin.describe_consumer_groups([group])[group].result()
    except KafkaException as exc:
        raise kafka_error(exc, None, f"describing consumer group {group}") from exc
    state = getattr(desc.state, "name", str(desc.state)).upper()
    return state, len(desc.members or [])


def ensure_idle(admin: AdminClient, group: str, force: bool = False) -> None:
    """Refuse unless the broker reports the group empty, or ``force`` is given.

    The embedded broker (tansu) never lists a group's members, keeps a group STABLE after
    members that stopped without a LeaveGroup (Faust workers) and accepts offset changes for
    live groups; there, stop the consumers yourself and pass --force.
    """
    state, members = group_state(admin, group)
    if members or state not in IDLE_STATES:
        if force:
            logger.warning("group %s reported %s with %d members; going on because of --force", group, state, members)
            return
        raise GroupActiveError(
            f"consumer group {group} is active (state {state}, {members} members reported): "
            "stop its consumers, wait for the session timeout, and run this again "
            "(on the embedded broker, which never reports a group empty: stop them and use --force)"
        )


def committed(admin: AdminClient, group: str, topic: str, partitions: list[int]) -> dict[int, int | None]:
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in partitions])
    try:
        result = admin.list_consumer_group_offsets([request])[group].result()
    except KafkaException as exc:
        raise kafka_error(exc, None, f"reading the offsets of group {group}") from exc
    return {tp.partition: (tp.offset if tp.offset >= 0 else None) for tp in result.topic_partitions}


def set_offsets(admin: AdminClient, group: str, topic: str, offsets: Mapping[int, int]) -> None:
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p, o) for p, o in sorted(offsets.items())])
    try:
        admin.alter_consumer_group_offsets([request])[group].result()
    except KafkaException as exc:
        raise kafka_error(exc, None, f"setting the offsets of group {group}") from exc


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "replay",
        help="reset a consumer group's offsets to replay a topic",
        description="Reset the committed offsets of an idle consumer group on one topic: to the earliest "
        "offsets, to given offsets, or to the first record at or after a time. Shows before and after.",
    )
    p.add_argument("--group", required=True, help="consumer group id")
    p.add_argument("--topic", default="current", help="current, raw, dlq, runs or a topic name (default current)")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--to-earliest", action="store_true", help="the earliest offsets")
    target.add_argument("--to-offset", metavar="P:O[,P:O...]", help="these offsets (other partitions unchanged)")
    target.add_argument("--to-timestamp", metavar="ISO8601", help="the first record at or after this time")
    p.add_argument("--dry-run", action="store_true", help="show what would change, change nothing")
    p.add_argument(
        "--force",
        action="store_true",
        help="go on although the broker does not report the group empty (needed on the embedded broker)",
    )
    p.add_argument(
        "--format",
        choices=["table", "json"],
        default="table",
        help="a table for people, or one JSON object (default table)",
    )
    p.set_defaults(func=cmd_replay)


def cmd_replay(args: argparse.Namespace) -> int:
    settings = KafkaSettings()
    topic = topic_name(settings, args.topic)
    conf = settings.confluent_config()
    admin = new_admin(conf)
    partitions = TopicReader(settings, topic).partitions()
    ensure_idle(admin, args.group, force=args.force)
    before = committed(admin, args.group, topic, partitions)
    ends = {p: off for (_, p), off in end_offsets(conf, [(topic, p) for p in partitions]).items()}
    if args.to_earliest:
        lows = TopicReader(settings, topic).low_offsets(partitions)
        targets = dict(lows)
    elif args.to_offset:
        wanted = parse_offsets(args.to_offset)
        unknown = sorted(set(wanted) - set(partitions))
        if unknown:
            raise ConfigError(f"topic {topic} has no partition {unknown}")
        for p, off in wanted.items():
            if off > ends[p]:
                raise ConfigError(f"offset {off} is past the end of {topic}[{p}] ({ends[p]})")
        targets = dict(wanted)
    else:
        when = parse_timestamp(args.to_timestamp)
        targets = offsets_for_timestamp(conf, topic, partitions, int(when.timestamp() * 1000))
    rows = [
        {"partition": p, "before": before.get(p), "after": targets.get(p, before.get(p)), "end": ends[p]}
        for p in partitions
    ]
    if not args.dry_run:
        set_offsets(admin, args.group, topic, targets)
        now = committed(admin, args.group, topic, partitions)
        wrong = {p: (now.get(p), off) for p, off in targets.items() if now.get(p) != off}
        if wrong:
            raise BrokerError(f"the broker did not keep the new offsets (partition: (committed, wanted)): {wrong}")
    _report(args, topic, rows)
    return 0


def _report(args: argparse.Namespace, topic: str, rows: list[dict[str, Any]]) -> None:
    if args.format == "json":
        print(json.dumps({"group": args.group, "topic": topic, "dry_run": args.dry_run, "partitions": rows}))
        return
    table = Table(title=f"group {args.group} on {topic}" + (" (dry run: nothing changed)" if args.dry_run else ""))
    for column in ("partition", "before", "after", "end", "to replay"):
        table.add_column(column, justify="right")
    for row in rows:
        after = row["after"]
        table.add_row(
            str(row["partition"]),
            "-" if row["before"] is None else str(row["before"]),
            "-" if after is None else str(after),
            str(row["end"]),
            "-" if after is None else str(row["end"] - after),
        )
    table_console().print(table)
