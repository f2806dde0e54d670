#!/usr/bin/env bash
# The paper's learning-rate protocol on TREC 16-shot with MiniLM: phase 1 at
# lr 1e-3, phase 2 at each of {1e-3, 2e-3, 5e-4, 1e-4}, the phase-2 lr chosen per run on D_RL
# (``--phase2-lrs``). Prompt v2 (CE in both phases) and CRL-Prompt get the same selection and are
# paired on (data seed, training seed) under the tag ``paper-lr``; the lr 1e-2 runs of
# scripts/kshot.sh (10 + 10 epochs) are the comparison. Phase 1 runs 40 epochs (120 steps at
# batch 32): at lr 1e-3 the 10 epochs of the lr 1e-2 grid move the prompt a tenth as far. The
# record keeps every phase-2 point (``phase2_lr_grid``); resumes like every reproduce grid.
set -euo pipefail
PY="${PY:-python}"
RESULTS="${RESULTS:-results/repro/lr_protocol.jsonl}"
DATA_DIR="${DATA_DIR:-../shared/data}"
export OMP_NUM_THREADS=1
$PY -m crlprompt.runners.crl --tasks trec --models minilm --k-shots 16 --data-seeds ${DATA_SEEDS:-13 21 42} --seeds 0 \
    --methods ptv2 crl --lr 1e-3 --phase2-lrs 1e-3 2e-3 5e-4 1e-4 --tag paper-lr --phase1-epochs 40 --phase2-epochs 10 \
    --rl-interval 10 --data-dir "$DATA_DIR" --progress False --out runs/lr_protocol --results "$RESULTS"
