"""Benchmarks: llmtool against the tool a user would otherwise pick, side by side (make bench)."""
