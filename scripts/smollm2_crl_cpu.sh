#!/usr/bin/env bash
# Table 1's SmolLM2 CRL-Prompt row with the token init of the decoder prefix
# (the row in results/paper_grid_h100.jsonl predates it). The paper grid's settings (full data,
# 3 + 2 epochs at lr 1e-2, batch 32, N = 100), TREC, on the CPU, one torch thread: the training
# seeds that fit (seed 0 first); the Prompt v2 rows with the same init are the H100 records of
# results/smollm2_ptv2_token_init_h100.jsonl. Resumes like every reproduce grid.
set -euo pipefail
PY="${PY:-python}"
export OMP_NUM_THREADS=1
$PY -m crlprompt.runners.crl --tasks trec --models smollm2 --methods crl --seeds ${SEEDS:-0 1 2} --lr 1e-2 \
    --phase1-epochs 3 --phase2-epochs 2 --progress False --out runs/smollm2_cpu \
    --results "${RESULTS:-results/smollm2_crl_token_init_cpu.jsonl}"
