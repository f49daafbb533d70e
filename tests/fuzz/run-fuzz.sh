#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# run-fuzz.sh TARGET SECONDS WORKDIR SEEDS REGRESSIONS
# First replays every regression input (each must not crash), then fuzzes
# for SECONDS starting from the seeds.  A crash leaves its input in WORKDIR
# (copy it to tests/fuzz/regressions/<parser>/ once fixed).
set -euo pipefail
target=$1 secs=$2 work=$3 seeds=$4 regress=$5
mkdir -p "$work/corpus" "$work/artifacts"
if [ -d "$regress" ] && [ -n "$(ls -A "$regress" 2>/dev/null)" ]; then
  "$target" -runs=0 "$regress"/*
fi
dirs=("$work/corpus")
[ -d "$seeds" ] && dirs+=("$seeds")
exec "$target" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1 -artifact_prefix="$work/artifacts/" "${dirs[@]}"
