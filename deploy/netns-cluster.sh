#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Test "hosts" in network namespaces joined by a bridge, for multi-host
# tests on one machine (root only).  Every address used lives inside the
# namespaces and the bridge created here; nothing is routed elsewhere.
#
#   netns-cluster.sh up TAG N     namespaces TAG-h1..TAG-hN with addresses
#                                 10.99.K.1..N/24 (K derived from TAG), a
#                                 bridge blk-TAG with 10.99.K.254 so that
#                                 the root namespace reaches them; prints K
#   netns-cluster.sh down TAG     remove what `up TAG` created
#   netns-cluster.sh cut TAG I    take host I off the network (link down)
#   netns-cluster.sh heal TAG I   put it back
#   netns-cluster.sh exec TAG I CMD...   run CMD inside host I
#   netns-cluster.sh addr TAG I   print host I's address
# TAG: 1-6 characters [a-z0-9] (interface names are limited to 15).
set -euo pipefail

subnet() {   # a stable third octet in 1..250 from the tag
  local h
  h=$(printf '%s' "$1" | cksum | cut -d' ' -f1)
  echo $(( h % 250 + 1 ))
}

check_tag() {
  [[ "$1" =~ ^[a-z0-9]{1,6}$ ]] || { echo "netns-cluster: bad TAG '$1'" >&2; exit 2; }
}

up() {
  local tag=$1 n=$2 k
  check_tag "$tag"
  k=$(subnet "$tag")
  if ip route show | grep -q "^10\.99\.$k\."; then
    echo "netns-cluster: 10.99.$k.0/24 already in use (another test with tag $tag?)" >&2
    exit 1
  fi
  ip link add "blk-$tag" type bridge
  ip addr add "10.99.$k.254/24" dev "blk-$tag"
  ip link set "blk-$tag" up
  for i in $(seq 1 "$n"); do
    local ns="$tag-h$i"
    ip netns add "$ns"
    ip link add "v$tag$i" type veth peer name "p$tag$i"
    ip link set "p$tag$i" netns "$ns"
    ip link set "v$tag$i" master "blk-$tag"
    ip link set "v$tag$i" up
    ip netns exec "$ns" ip link set lo up
    ip netns exec "$ns" ip link set "p$tag$i" name eth0
    ip netns exec "$ns" ip addr add "10.99.$k.$i/24" dev eth0
    ip netns exec "$ns" ip link set eth0 up
  done
  echo "$k"
}

down() {
  local tag=$1
  check_tag "$tag"
  for ns in $(ip netns list | awk '{print $1}' | grep -E "^$tag-h[0-9]+$" || true); do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
    ip netns del "$ns" || true
  done
  for l in $(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -E "^v$tag[0-9]+$" || true); do
    ip link del "$l" 2>/dev/null || true
  done
  ip link del "blk-$tag" 2>/dev/null || true
}

case "${1:-}" in
  up) up "$2" "$3" ;;
  down) down "$2" ;;
  cut) ip link set "v$2$3" down ;;
  heal) ip link set "v$2$3" up ;;
  exec) tag=$2 i=$3; shift 3; exec ip netns exec "$tag-h$i" "$@" ;;
  addr) echo "10.99.$(subnet "$2").$3" ;;
  *) sed -n '2,20p' "$0" >&2; exit 2 ;;
esac
