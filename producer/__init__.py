"""The scheduled producer: download, parse, validate and publish an ISIN list."""
