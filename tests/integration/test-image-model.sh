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
make_cluster 3
osd_conf
for m in "${MONS[@]}"; do start_mon "$m"; done
wait_quorum 30
"$BLKCTL" pool create rbd 16 --size 3 --min-size 2 --failure-domain osd >/dev/null || fail "pool create"
for i in 0 1 2; do mkfs_osd $i 512M; done
for i in 0 1 2; do start_osd $i; done
wait_osds_up 3 30
for seed in ${MODEL_SEEDS:-1 7}; do
  "$MODEL" rbd "m$seed" model --ops "${MODEL_OPS:-300}" --seed $seed || fail "model seed $seed"
done
"$MODEL" rbd stress stress --seconds 8 --qd 16 --seed 3 || fail "stress"
OPS=${MODEL_OPS:-300}
"$MODEL" rbd thr threads --qd 6 --ops $((OPS / 2)) || fail "threads"
[ -z "$("$BLKCTL" image ls rbd | grep '^m')" ] || fail "model images not removed"
for i in 0 1 2; do stop_osd $i; done
echo PASS
