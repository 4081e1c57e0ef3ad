#!/usr/bin/env bash
# The whole llmtool pipeline on the bundled sample, as a reader would type it.
#
#   bash examples/pipeline.sh [OUT_DIR]          (make demo runs it into demo_out/)
#
# Every stage caches: run it twice and each step after the pipe says "up to date" (the piped
# data stages rerun, since a pipe cannot be checked before it is read, but they rebuild
# clean.parquet with the same provenance key, so nothing after them is redone).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-demo_out}
mkdir -p "$OUT"
llmtool() { .venv/bin/llmtool "$@"; }     # or the llmtool on your PATH

# 0. A small web crawl we may ship: two public-domain novels as web pages in a WARC file,
#    with boilerplate, mirrored and scraped copies, spam pages and a German page.
.venv/bin/python examples/make_sample_warc.py examples/data/books "$OUT/crawl.warc.gz"

# 1-3. Data: fetch the pages, clean them the FineWeb way, drop duplicates, all through pipes.
#      --rejected keeps every dropped page with the reason.
llmtool fetch "$OUT/crawl.warc.gz" \
  | llmtool filter - --rejected "$OUT/rejected.parquet" \
  | llmtool dedup - --clusters "$OUT/clusters.parquet" -o "$OUT/clean.parquet"
llmtool info "$OUT/clean.parquet"

# 4. Tokenizer: our own byte-level BPE on the clean text (GPT-4 split pattern).
llmtool bpe-train "$OUT/clean.parquet" --vocab-size 4096 -o "$OUT/tok.json"

# 5. Token file, with 5% of the documents held out for validation ($OUT/data.val.bin).
llmtool tokenize "$OUT/clean.parquet" --tokenizer "$OUT/tok.json" --val-fraction 0.05 -o "$OUT/data.bin"
llmtool info "$OUT/data.bin" --decode 32

# 6. Pretrain a small GPT for a few minutes on the CPU (use --device cuda on a GPU).
llmtool pretrain "$OUT/data.bin" --val "$OUT/data.val.bin" ${PRETRAIN_ARGS:---depth 4 --context 256 --max-time 150s} -o "$OUT/base"

# 7. Sample from it.
llmtool sample "$OUT/base" "It is a truth universally acknowledged" "Call me" \
  --max-tokens 60 --temperature 0.8 --top-k 50 --seed 0

# 8. Make it an assistant: finetune on conversations (the loss is on the answers only). The
#    identity conversations name it after this project; OpenAssistant dialogues add variety.
llmtool convert identity examples/data/post/sft_identity/fastchat_dummy_conversation.json -o "$OUT/identity.parquet"
llmtool convert oasst examples/data/post/oasst/en_100_tree.jsonl -o "$OUT/oasst.parquet"
llmtool sft "$OUT/base" "$OUT/identity.parquet" "$OUT/oasst.parquet" ${SFT_ARGS:---epochs 6} -o "$OUT/chat"

# 9. Ask it (a chat model answers a prompt as a user message and stops at <|im_end|>).
llmtool sample "$OUT/chat" "Who are you?" "What is the capital of France?" --temperature 0 --max-tokens 60
