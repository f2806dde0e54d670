#!/usr/bin/env bash
# Mutation score of one package folder: mutmut on a copy of the committed tree, run with the fast
# tests that cover the folder ([tool.crlprompt.mutation.tests] in pyproject.toml).
#
#   scripts/mutation.sh crlprompt/losses            # or crlprompt/envs, crlprompt/agents
#   scripts/mutation.sh crlprompt/envs --max-children 2
#
# Resumable: the work copy .mutation/<folder>/ keeps mutmut's results, so rerunning the same command
# after an interruption goes on where it stopped; after new commits mutmut reruns only the mutants of
# the functions that changed. A finished run appends its score to docs/mutation-scores.jsonl and
# regenerates the table in docs/mutation.md (scripts/mutation_table.py). Hours per folder on 2 cores:
# run it in the background, e.g. `nohup scripts/mutation.sh crlprompt/losses > mutation-losses.log 2>&1 &`.
set -euo pipefail
cd "$(dirname "$0")/.."
FOLDER="${1:?usage: scripts/mutation.sh crlprompt/losses|crlprompt/envs|crlprompt/agents [mutmut run options]}"
FOLDER="${FOLDER%/}"
shift
ROOT="$PWD"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
"$PY" -c "import mutmut" 2>/dev/null || { echo "mutmut is not installed: pip install -e '.[mutation]'" >&2; exit 2; }
TESTS="$("$PY" scripts/mutation_table.py tests "$FOLDER")"   # an unknown folder stops here
WORK=".mutation/${FOLDER//\//-}"
COMMIT="$(git rev-parse HEAD)"
mkdir -p "$WORK"
rm -rf "$WORK/crlprompt" "$WORK/tests"              # files deleted since the last run go too; mutants/ stays
git archive HEAD | tar -x -C "$WORK"                 # the committed tree: uncommitted edits are not measured
"$PY" scripts/mutation_table.py configure "$FOLDER" "$WORK/pyproject.toml"
echo "mutating $FOLDER at ${COMMIT:0:10} in $WORK (tests: $TESTS)"
(cd "$WORK" && OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false "$PY" -m mutmut run "$@")
"$PY" scripts/mutation_table.py record "$FOLDER" "$WORK" --commit "$COMMIT"
"$PY" scripts/mutation_table.py table --write docs/mutation.md
