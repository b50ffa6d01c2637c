#!/bin/bash
# Queue Table II as a job array of N GPU tasks and, after all of them succeeded, the report:
#   ./submit-table2.sh [N]         (RUNS, EPOCHS and OUT are passed on to both jobs)
# Run it from the folder the results belong in: jobs start where they were submitted.
set -euo pipefail
here=$(dirname "$0")
N=${1:-4}
array=$(sbatch --parsable --export=ALL --array="0-$((N - 1))" "$here/table2-array.sbatch")
report=$(sbatch --parsable --export=ALL --dependency="afterok:${array%%;*}" "$here/table2-report.sbatch")
echo "job array $array ($N tasks), report $report after it"
