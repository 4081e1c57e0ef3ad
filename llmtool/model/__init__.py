"""The one model of llmtool: a decoder-only GPT (gpt), its generation (generate) and checkpoints."""
