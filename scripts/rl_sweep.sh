#!/usr/bin/env bash
# Does the RL term ever matter? The RL term alone (method crl-rl: β = 0) at the
# paper's γ = 2e-5 and larger, × N (RL every N optimizer steps) × estimator (the faithful single
# sample, or antithetic pairs with K = 8), paired with Prompt v2 on the same (data, training) seed.
# MiniLM, lr 1e-2, batch 32, σ 0.1, one torch thread; every run appends one record, reruns skip them.
#   16-shot (SST-2, data seeds 13 21 42, 30 + 30 epochs of 1 step; TREC's points are in scripts/kshot.sh):
#     N = 10 only: the 30 phase-2 steps never reach N = 100.
#   full data (TREC, 4,907 train + 545 D_RL, 3 + 2 epochs as Table 1: 308 phase-2 steps, so N = 100
#     gives 3 RL updates and N = 10 gives 30), training seed 0, records results/rl_sweep/.
set -euo pipefail
PY="${PY:-python}"
DATA_DIR="${DATA_DIR:-../shared/data}"
export OMP_NUM_THREADS=1
COMMON=(--models minilm --lr 1e-2 --data-dir "$DATA_DIR" --progress False --seeds 0)

point() {  # task kshot-args "phase1 [phase2] epochs" gamma N estimator out results
  local task=$1 kargs=$2 gamma=$4 n=$5 est=$6 out=$7 results=$8 samples=1 ep ep2
  read -r ep ep2 <<<"$3"
  ep2=${ep2:-$ep}  # one number: both phases (the 16-shot points); full data passes "3 2" as Table 1 runs
  [ "$est" = antithetic ] && samples=8
  # shellcheck disable=SC2086
  $PY -m crlprompt.runners.crl --tasks "$task" $kargs --methods crl-rl --gamma "$gamma" --rl-interval "$n" \
      --rl-estimator "$est" --rl-samples "$samples" --tag "g$gamma-N$n-$est" --phase1-epochs "$ep" \
      --phase2-epochs "$ep2" --out "$out" --results "$results" "${COMMON[@]}"
}

# 1. SST-2 16-shot (the Prompt v2 runs are scripts/kshot.sh's), then the largest γ on both 16-shot tasks
K16="--k-shots 16 --data-seeds 13 21 42"
for gamma in 2e-3 2e-1; do
  point sst2 "$K16" 30 "$gamma" 10 single runs/kshot/sweep results/repro/sweep.jsonl
done
# 2. Full-data TREC: Prompt v2 on this code and machine, the paper's point, then larger γ and N = 10
FULL=(trec "" "3 2")  # the budget of its Prompt v2 partner (the records before this fix ran 3 + 3: the tables refuse them)
$PY -m crlprompt.runners.crl --tasks trec --methods ptv2 --phase1-epochs 3 --phase2-epochs 2 \
    --out runs/rl_sweep --results results/rl_sweep/trec-full.jsonl "${COMMON[@]}"
for spec in "2e-5 100 single" "2e-1 10 single" "2e-5 10 single" "2e-3 10 single" "2e-1 10 antithetic" \
            "2e-1 100 single" "2e1 10 single"; do
  read -r gamma n est <<<"$spec"
  point "${FULL[@]}" "$gamma" "$n" "$est" runs/rl_sweep results/rl_sweep/trec-full.jsonl
done
# 3. The antithetic estimator on SST-2 16-shot, and where training destabilises on 16-shot: γ = 20
for gamma in 2e-3 2e-1; do
  point sst2 "$K16" 30 "$gamma" 10 antithetic runs/kshot/sweep results/repro/sweep.jsonl
done
for task in trec sst2; do
  ep=10; [ "$task" = sst2 ] && ep=30
  point "$task" "$K16" "$ep" 2e1 10 single runs/kshot/sweep results/repro/sweep.jsonl
done
$PY -m crlprompt.runners.tables results/repro results/rl_sweep
