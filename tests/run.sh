#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The one test command (README, .ci/run): installs what is missing, builds
# the test tree with clang + ASan + UBSan + libFuzzer targets and the
# Release tree with gcc -O2 (both -Werror), then runs every CTest test:
# unit, sim, fuzz (bounded), integration.  Extra arguments go to ctest
# (e.g. tests/run.sh -L unit).
set -euo pipefail
cd "$(dirname "$0")/.."
TOP=$(pwd)
./deploy/install-deps.sh
export BLK_BUILD_DIR=$TOP/build-test
CC=clang cmake -S . -B build-test -DCMAKE_BUILD_TYPE=Debug -DBLK_SANITIZE=ON -DBLK_FUZZ=ON \
  -DBLK_FUZZ_SECONDS="${BLK_FUZZ_SECONDS:-30}" >/dev/null
cmake --build build-test -j2
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j2
cd build-test
ctest --output-on-failure -j2 --timeout 900 "$@"
