#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# libblk against a model: image-model creates an image with 1 MiB objects
# and runs random writes, reads, discards, write-zeroes, resizes, flushes
# and block-status queries, comparing every byte with an in-memory model;
# then 6 application threads share one image with synchronous calls, and
# a stress pass keeps aio in flight and verifies every acknowledged write.  Under the sanitizer build this is also libblk's leak check
# (LeakSanitizer fails the driver's exit status).
source "$(dirname "$0")/../functions.sh"
requires python3
MODEL=$BLK_BUILD_DIR/tests/integration/image-model
[ -x "$MODEL" ] || fail "image-model not built ($MODEL)"
rbd_cluster
for seed in ${MODEL_SEEDS:-1 7}; do
  "$MODEL" rbd "m$seed" model --ops "${MODEL_OPS:-300}" --seed $seed || fail "model seed $seed"
done
"$MODEL" rbd stress stress --seconds 8 --qd 16 --seed 3 || fail "stress"
OPS=${MODEL_OPS:-300}
"$MODEL" rbd thr threads --qd 6 --ops $((OPS / 2)) || fail "threads"
[ -z "$("$BLKCTL" image ls rbd | grep '^m')" ] || fail "model images not removed"
for i in 0 1 2; do stop_osd $i; done
echo PASS
