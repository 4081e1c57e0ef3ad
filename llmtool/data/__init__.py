"""Data stages' machinery: fetch sources, WARC reading, extraction, filters, dedup."""
