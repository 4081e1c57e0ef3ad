"""llmtool: the LLM pipeline from raw web data to a chat model, as composable commands."""

__version__ = "0.1.0"
