#!/usr/bin/env bash
# Few-shot results on the trained pooling and the neutral start, beside the no-prompt floor.
# Every finished run appends one JSON record (commit, versions, machine) as it ends; rerunning the
# same command skips what is recorded, so an interrupted grid keeps what it finished.
#
#   scripts/floor_grid.sh repro     # probe (the floor), Prompt v2, CRL-Prompt at k = 16 on TREC and SST-2
#   scripts/floor_grid.sh repro-one sst2 30   # one task of it (two processes split the grid this way)
#   scripts/floor_grid.sh head-ablation  # Prompt v2 whose start head takes the floor's C (tag head-c-floor)
#   scripts/floor_grid.sh search    # CMA-ES at 1,000 evaluations on the three MiniLM 16-shot ids, then
#                                   # random / ES / PPO / off-policy where time allows
#   scripts/floor_grid.sh search-one TREC trec cma    # one id and algorithm list (to split the grid)
#   scripts/floor_grid.sh smollm2   # CMA-ES at 1,000 evaluations on SST2- and TREC-SmolLM2-16Shot (3 data seeds)
#   scripts/floor_grid.sh main      # the main job (full-data TREC, CRL-Prompt, seed 0), as the README runs it
#   scripts/floor_grid.sh full      # full-data TREC / MiniLM: the floor and Prompt v2 (seed 0)
#
# One torch thread per process (two processes share a 2-core CPU). Data seeds are LM-BFF's.
set -euo pipefail
PY="${PY:-python}"
DATA_DIR="${DATA_DIR:-../shared/data}"
OUT="${OUT:-runs/floor}"
RES="${RES:-results/floor}"
export OMP_NUM_THREADS=1 CRLPROMPT_DATA_DIR="$DATA_DIR"
SEEDS5=(13 21 42 87 100)
mkdir -p "$RES/repro" "$RES/search" "$RES/full" results/main_job "$OUT"

repro() {  # task epochs_per_phase: the floor, Prompt v2 and CRL-Prompt (the budgets of scripts/kshot.sh)
  local task=$1 ep=$2
  $PY -m crlprompt.runners.crl --tasks "$task" --models minilm --k-shots 16 --data-seeds "${SEEDS5[@]}" --seeds 0 \
      --methods probe ptv2 crl --lr 1e-2 --rl-interval 10 --phase1-epochs "$ep" --phase2-epochs "$ep" \
      --data-dir "$DATA_DIR" --progress False --out "$OUT/$task-k16" --results "$RES/repro/kshot.jsonl"
}

search() {  # id-prefix out-name algos data-seeds [model]
  local model=${5:-MiniLM}
  $PY -m crlprompt.runners.compare --env-id "CRLPrompt/$1-$model-16Shot-v0" --algos "$3" --budget 1000 --seeds 0 \
      --data-seeds "$4" --progress False --out "$RES/search/$2-${model,,}-1000"
}

case "${1:-}" in
  repro)
    repro trec 15    # 96 rows: 3 steps per epoch, 15 + 15 epochs
    repro sst2 30    # 32 rows: 1 step per epoch, 30 + 30 epochs
    ;;
  head-ablation)  # Prompt v2 with the start head at the floor's own C (chosen on D_RL), tagged, beside the default C = 0.1
    for te in trec:15 sst2:30; do
      $PY -m crlprompt.runners.crl --tasks "${te%%:*}" --models minilm --k-shots 16 --data-seeds "${SEEDS5[@]}" --seeds 0 \
          --methods ptv2 --lr 1e-2 --rl-interval 10 --phase1-epochs "${te##*:}" --phase2-epochs "${te##*:}" --head-c None \
          --tag head-c-floor --data-dir "$DATA_DIR" --progress False --out "$OUT/${te%%:*}-k16-head" \
          --results "$RES/repro/kshot.jsonl"
    done
    ;;
  repro-one)  # one task and its epochs per phase, e.g. `repro-one trec 15` (two processes split the grid this way)
    repro "$2" "$3"
    ;;
  search)   # everything, one process: CMA-ES first on every task, then the other algorithms
    all=13,21,42,87,100
    for t in SST2:sst2 TREC:trec AGNews:agnews; do search "${t%%:*}" "${t##*:}" cma "$all"; done
    for t in SST2:sst2 TREC:trec AGNews:agnews; do search "${t%%:*}" "${t##*:}" cma,random,es,ppo,offpolicy "$all"; done
    ;;
  search-one)  # one id and algorithm list, e.g. `search-one TREC trec cma` (two processes split the grid this way)
    search "$2" "$3" "$4" 13,21,42,87,100
    ;;
  smollm2)
    search SST2 sst2 cma 13,21,42 SmolLM2
    search TREC trec cma 13,21,42 SmolLM2
    ;;
  main)
    # the README's main job, exactly as the README gives it; its final record (metrics.jsonl) is kept
    rm -rf runs/main
    cmd="crl-prompt --threads 1 train --task trec --model minilm --method crl --lr 1e-2 --out runs/main"
    $PY -m crlprompt.cli ${cmd#crl-prompt }
    tail -n 1 runs/main/metrics.jsonl | $PY -c "import json, sys; r = json.loads(sys.stdin.read()); \
r['command'] = sys.argv[1]; print(json.dumps(r))" "$cmd" > results/main_job/trec-minilm-crl-s0.jsonl
    ;;
  full)
    # full-data TREC / MiniLM beside the main job: the floor and Prompt v2 (Table 1's budget: 3 + 2 epochs)
    $PY -m crlprompt.runners.crl --tasks trec --models minilm --methods probe ptv2 --seeds 0 --lr 1e-2 \
        --data-dir "$DATA_DIR" --progress False --out "$OUT/full" --results "$RES/full/table1.jsonl"
    ;;
  *) echo "usage: $0 repro|repro-one TASK EPOCHS|head-ablation|search|search-one ID NAME ALGOS|smollm2|main|full" >&2; exit 2 ;;
esac
