#!/bin/bash
# Queue Table II as a job array of N GPU tasks and, after all of them succeeded, the report:
#   ./submit-table2.sh [N]         (RUNS, EPOCHS and OUT are passed on to both jobs)
set -euo pipefail
cd "$(dirname "$0")"
N=${1:-4}
array=$(sbatch --parsable --export=ALL --array="0-$((N - 1))" table2-array.sbatch)
report=$(sbatch --parsable --export=ALL --dependency="afterok:${array%%;*}" table2-report.sbatch)
echo "job array $array ($N tasks), report $report after it"
