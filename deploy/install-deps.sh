#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Install every Debian 12 package that building, testing and running the
# demo cluster needs.  Idempotent: does nothing when all are present.
set -euo pipefail
PKGS=(
  build-essential cmake pkg-config clang libclang-rt-14-dev
  libevent-dev libprotobuf-c-dev protobuf-c-compiler liburcu-dev
  librocksdb-dev libssl-dev libnbd-dev libcmocka-dev liburing-dev
  fio nbdkit libnbd-bin python3-libnbd qemu-utils nbd-client nbd-server
  iproute2 procps psmisc util-linux valgrind
  openssl
  qemu-system-x86 busybox-static linux-image-amd64 cpio kmod xz-utils
  libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
echo "install-deps: installing ${missing[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
