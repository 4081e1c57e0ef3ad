"""Reading and writing llmtool's artifacts: tables, token files, provenance, atomic writes."""
