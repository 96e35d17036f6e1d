#!/usr/bin/env bash
# The MME-SID evidence on Beauty (docs/RESULTS.md): TF-IDF text table, the two-modality
# tokenizer at the LLM's hidden size (stories260K: 64), then MME-SID, MME-random and E4SRec fine-tuned
# from configs/beauty/<variant>.json (docs/RESULTS.md: mme-sid-1ep mme-random-1ep e4srec-1ep, one epoch each; the
# variants without -1ep stop at 2,500 steps) and evaluated on the test split, plus the popularity baseline.
# Outputs under runs/beauty/. CPU: ~4 min for the tokenizer, 20–30 min per one-epoch variant on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
M="node dist/lib/cli/main.js"
B=../shared/data/beauty
mkdir -p runs/beauty
[ -f runs/beauty/text_emb.npy ] || $M embed-text --items $B/items.jsonl --out runs/beauty/text_emb.npy --dim 64 --json > runs/beauty/embed-text.json
[ -f runs/beauty/tokenizer/tokenizer.json ] || $M tokenizer train --collab $B/sasrec_item_emb.npy --text runs/beauty/text_emb.npy \
  --out runs/beauty/tokenizer --code-dim 64 --lr 1e-3 --epochs 200 --patience 200 --threads 2 --seed 42 --json > runs/beauty/tokenizer.json
$M evaluate --sequences $B/sequences.txt --model popularity --json > runs/beauty/popularity.json
for v in "$@"; do
  $M finetune --config configs/beauty/$v.json --json > runs/beauty/$v.finetune.json
  $M evaluate --run runs/beauty/$v --json > runs/beauty/$v.eval.json
done
