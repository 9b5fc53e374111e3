"""The golden record of an ISIN: one best value per field across the sources that list it.

Pure and Kafka-free, so the stream worker, an offline rebuild and the unit tests run the same
rules. ``vocabulary`` names the canonical fields and the column names that mean them;
``identifiers`` derives, recognises, cleans and compares values; ``config`` reads which source
is believed for which field from the sources file; ``view`` builds the record.
"""

from core.golden.config import GoldenConfig, attribute_name, problems
from core.golden.identifiers import clean, derived_identifiers, normalise, recognise
from core.golden.view import (
    Conflict,
    GoldenValue,
    GoldenView,
    IdentifierValue,
    canonical_fields,
    golden_view,
    golden_view_of_one,
    lookup_keys,
    mapped_attributes,
)
from core.golden.vocabulary import FIELDS, HEADER_SYNONYMS, IDENTIFIER_FIELDS, LOOKUP_FIELDS, field_for

__all__ = [
    "FIELDS",
    "HEADER_SYNONYMS",
    "IDENTIFIER_FIELDS",
    "LOOKUP_FIELDS",
    "Conflict",
    "GoldenConfig",
    "GoldenValue",
    "GoldenView",
    "IdentifierValue",
    "attribute_name",
    "canonical_fields",
    "clean",
    "derived_identifiers",
    "field_for",
    "golden_view",
    "golden_view_of_one",
    "lookup_keys",
    "mapped_attributes",
    "normalise",
    "problems",
    "recognise",
]
