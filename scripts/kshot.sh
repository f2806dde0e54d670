#!/usr/bin/env bash
# The earlier few-shot grid ([CLS] pooling, random prefix start; superseded by scripts/floor_grid.sh) on MiniLM, as run for the README (2-core CPU, one process,
# one torch thread). Every finished run appends one JSON record (commit, versions, machine) to
# $RESULTS; rerunning skips the recorded runs, so the script resumes after an interruption.
#
# k-shot data as LM-BFF: k rows per class to train, k more per class as D_RL (reward + model
# selection), the full test set; data seeds 13 21 42 87 100. Budget: 60 optimizer steps at batch 32
# and lr 1e-2 (30 of CE, then 30 of phase 2), the same for every method, so Prompt v2 (CE only for
# all 60) and CRL-Prompt are paired on (data seed, training seed). N = 10 (not the paper's 100,
# which never fires within 30 phase-2 steps): 3 RL updates per run.
set -euo pipefail
PY="${PY:-python}"
OUT="${OUT:-runs/kshot}"
RESULTS="${RESULTS:-results/repro/kshot.jsonl}"
SWEEP="${SWEEP:-results/repro/sweep.jsonl}"
DATA_DIR="${DATA_DIR:-../shared/data}"
export OMP_NUM_THREADS=1
mkdir -p "$(dirname "$RESULTS")" "$OUT"
COMMON=(--models minilm --lr 1e-2 --rl-interval 10 --data-dir "$DATA_DIR" --progress False)
SEEDS5=(13 21 42 87 100)

grid() {  # task k epochs_per_phase seeds... -> the four ablation rows (v2 only, + contrastive, + RL, full)
  local task=$1 k=$2 ep=$3; shift 3
  $PY -m crlprompt.runners.crl --tasks "$task" --k-shots "$k" --data-seeds "${SEEDS5[@]}" --seeds "$@" --ablation True \
      --phase1-epochs "$ep" --phase2-epochs "$ep" --out "$OUT/$task-k$k" --results "$RESULTS" "${COMMON[@]}"
}
pair() {  # the same cells, Prompt v2 and CRL-Prompt only (the headline pair first; grid adds the ablations later)
  local task=$1 k=$2 ep=$3; shift 3
  $PY -m crlprompt.runners.crl --tasks "$task" --k-shots "$k" --data-seeds "${SEEDS5[@]}" --seeds "$@" --methods ptv2 crl \
      --phase1-epochs "$ep" --phase2-epochs "$ep" --out "$OUT/$task-k$k" --results "$RESULTS" "${COMMON[@]}"
}

# In order of priority (each step resumes; on the shared 2-core CPU steps 1-3 took about 75 min).
# 1. TREC 16-shot (96 rows: 3 steps per epoch, 10 + 10 epochs), training seed 0
grid trec 16 10 0
# 2. The RL term alone (β = 0) at larger γ: γ × estimator on TREC 16-shot, N = 10, data seeds 13 21 42,
#    seed 0 (γ = 2e-5 with the single-sample estimator is row "+ RL" of step 1)
for gamma in 2e-3 2e-1; do
  for est in single antithetic; do
    samples=1; [ "$est" = antithetic ] && samples=8
    $PY -m crlprompt.runners.crl --tasks trec --k-shots 16 --data-seeds 13 21 42 --seeds 0 --methods crl-rl \
        --gamma "$gamma" --rl-estimator "$est" --rl-samples "$samples" --tag "g$gamma-N10-$est" \
        --phase1-epochs 10 --phase2-epochs 10 --out "$OUT/sweep" --results "$SWEEP" "${COMMON[@]}"
  done
done
# 3. The earlier contrastive form (SimCSE dropout positive, noise negatives, same-class negatives) beside it
$PY -m crlprompt.runners.crl --tasks trec --k-shots 16 --data-seeds "${SEEDS5[@]}" --seeds 0 --methods crl \
    --contrast-mode noise --tag contrast-noise --phase1-epochs 10 --phase2-epochs 10 --out "$OUT/trec-k16" \
    --results "$RESULTS" "${COMMON[@]}"
# 4. Where time allows, in this order: TREC training seed 1 (done), SST-2 16-shot (32 rows: 1 step per
#    epoch, 30 + 30 epochs) for training seeds 0 and 1, SST-2 64-shot (128 rows: 4 steps per epoch,
#    8 + 8 epochs), AG News 16-shot (64 rows: 2 steps per epoch, 15 + 15 epochs; its 7,600-row test set
#    makes each run several minutes on one thread), SST-2 256-shot (512 rows: 16 steps per epoch, 2 + 2),
#    AG News 64-shot (256 rows: 8 steps per epoch, 4 + 4). TREC has no k = 64 or 256 as LM-BFF samples it:
#    its ABBR class has 86 training rows, and k-shot needs 2k per class (k train + k D_RL), so k <= 43.
#    On a shared 2-core CPU an SST-2 16-shot run takes about 3 min, so the pairs come first, the ablations after.
grid trec 16 10 1
grid sst2 16 30 0
pair sst2 16 30 1
pair sst2 64 8 0
grid sst2 64 8 0
grid sst2 16 30 1
pair agnews 16 15 0
pair sst2 256 2 0
grid agnews 16 15 0
grid sst2 256 2 0
grid agnews 64 4 0
grid agnews 16 15 1
$PY -m crlprompt.runners.tables results/repro
