"""The stream app: a Faust worker that deduplicates ISIN events into a RocksDB table."""
