"""What an operator runs against a running pipeline, and the small API downstream services use.

- ``client.py``: a small Python API for downstream services (``TopicReader``, ``current_set``);
- ``downstream.py``: ``isin-pipeline tail`` and ``snapshot``, the topics as JSON;
- ``replay.py``: ``isin-pipeline replay``, a consumer group's committed offsets moved;
- ``rebuild.py``: ``isin-pipeline rebuild``, the table recomputed from the raw topic and the
  compacted topic repaired, one partition at a time;
- ``cli.py``: the argument parsers of these commands.

Three words that sound alike mean three different things:

- *reindex* (``stream_app/reindex.py``, inside a running worker): one run's keys re-read from
  the raw topic, for one end-of-run sweep whose seen index is incomplete;
- *replay* (``ops/replay.py``): a consumer group's offsets moved; no record read or written;
- *rebuild* (``ops/rebuild.py``, with the workers stopped): the whole table recomputed from the
  raw topic, and the compacted topic repaired where it differs.

This package stands on ``stream_app``, ``core`` and ``schemas``; it never imports ``producer`` or
``scheduler``, and only the command line (``isin_pipeline``) imports it (import-linter's contracts
in ``pyproject.toml``).
"""
