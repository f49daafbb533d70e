#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The hypervisor flow of issue 7 §5 under a real libvirtd (started by hand,
# private state, tests/guest/libvirt.sh):
#   1. a cluster (3 mons, 3 OSDs), pool KVMpool, image KVMpool/guest;
#   2. the client key: `blkctl auth get-or-create client.KVMpool mon 'allow r'
#      osd 'allow rwx pool=KVMpool' --print-key` (with BLK_NBD_SERVER=qemu-nbd
#      a 256-bit key from `openssl rand -base64 32`, said in the output);
#   3. virsh secret-define (usage ceph, name "client.KVMpool secret"),
#      secret-set-value from a 0600 file, secret-get-value read back into a
#      0600 key file that the host-local export is started with;
#   4. a domain whose disk is <disk type='network'><source protocol='nbd'
#      name='KVMpool/guest'> over <host transport='unix' socket=.../>, then a
#      second one over <host name='127.0.0.1' port=.../>: each boots (TCG),
#      the guest writes/reads its patterns (tests/guest/init) and powers off;
#      the host re-reads them through NBD and `blkctl image export`;
#   5. domains undefined, secret undefined, libvirtd stopped.
# BLK_NBD_SERVER=qemu-nbd uses the reference server instead of blk-nbd (the
# key then only makes the libvirt round trip).  Skips (77) only when
# qemu-system-x86_64 or libvirtd cannot run here.
export BLK_TEST_TIMEOUT=${BLK_TEST_TIMEOUT:-540}
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/../guest/lib.sh"
source "$(dirname "$0")/../guest/libvirt.sh"
guest_require_qemu
requires nbdsh nbdinfo python3 openssl
lv_start

T0=$(date +%s)
G=$TEST_DIR/guest   # kernel, initramfs and serial logs: read by QEMU's user
mkdir -p "$G"; chmod 755 "$G"
GUEST_INITRD=$G/initramfs.gz
guest_build_initramfs "$GUEST_INITRD"
cp "$GUEST_KERNEL" "$G/vmlinuz"   # libvirt relabels it for QEMU: never /boot's
chmod 644 "$G/vmlinuz" "$GUEST_INITRD"
export_prepare

# ---- 2. the key
CLIENT=client.$NBD_POOL
BLK_NBD=${BLK_NBD:-$BLK_BUILD_DIR/client/nbd/blk-nbd}
if [ "$BLK_NBD_SERVER" = blk-nbd ]; then
  KEY=$("$BLKCTL" auth get-or-create "$CLIENT" mon 'allow r' osd "allow rwx pool=$NBD_POOL" --print-key) ||
    fail "blkctl auth get-or-create $CLIENT"
  glog "key of $CLIENT from blkctl auth get-or-create"
  HAVE_AUTH=1
else
  KEY=$(openssl rand -base64 32)
  glog "reference server $BLK_NBD_SERVER has no cluster auth: key of $CLIENT from openssl rand -base64 32"
  HAVE_AUTH=0
fi
[ "$(printf '%s' "$KEY" | base64 -d | wc -c)" -ge 16 ] || fail "key '$KEY' is not base64 of >= 16 bytes"

# ---- 3. the libvirt secret and the key read back from it
SECRET_UUID=$(cat /proc/sys/kernel/random/uuid)
cat >"$TEST_DIR/secret.xml" <<EOF
<secret ephemeral='no' private='no'>
  <uuid>$SECRET_UUID</uuid>
  <description>blkstore key of $CLIENT for the host-local NBD export</description>
  <usage type='ceph'>
    <name>$CLIENT secret</name>
  </usage>
</secret>
EOF
lv_virsh secret-define "$TEST_DIR/secret.xml" || fail "virsh secret-define"
LV_SECRETS+=("$SECRET_UUID")
# the value goes through a 0600 file, never the command line (ps shows it)
(umask 077; printf '%s' "$KEY" >"$TEST_DIR/key.b64")
lv_virsh secret-set-value --secret "$SECRET_UUID" --file "$TEST_DIR/key.b64" || fail "virsh secret-set-value"
rm -f "$TEST_DIR/key.b64"
lv_virsh secret-list | sed 's/^/  secret-list: /'
# what a hypervisor's export helper does: look the secret up by usage, read it
UUID_BY_USAGE=$(lv_virsh secret-list | awk -v n="$CLIENT secret" '$0 ~ n { print $1 }')
[ "$UUID_BY_USAGE" = "$SECRET_UUID" ] || fail "secret lookup by usage name gave '$UUID_BY_USAGE'"
KEYFILE=$TEST_DIR/$CLIENT.key
(umask 077; lv_virsh secret-get-value "$SECRET_UUID" >"$KEYFILE") || fail "virsh secret-get-value"
[ "$(stat -c %a "$KEYFILE")" = 600 ] || fail "key file mode $(stat -c %a "$KEYFILE")"
[ "$(tr -d '\n' <"$KEYFILE")" = "$KEY" ] || fail "key read back from libvirt differs from the key set"
glog "secret $SECRET_UUID ('$CLIENT secret'): key read back into $KEYFILE (0600)"
if [ "$HAVE_AUTH" = 1 ]; then
  NBD_CLIENT_ARGS="--id $NBD_POOL --key-file $KEYFILE"
else
  glog "NOTE: the export runs without cluster auth; the key file only proves the libvirt round trip"
fi
export_serve

# ---- 4. domains on the export, unix socket then TCP
domain_xml() {   # NAME SERIAL SOURCE-HOST-ELEMENT
  cat <<EOF
<domain type='$([ "$GUEST_ACCEL" = kvm ] && echo kvm || echo qemu)'>
  <name>$1</name>
  <memory unit='MiB'>$GUEST_MEM</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>$G/vmlinuz</kernel>
    <initrd>$GUEST_INITRD</initrd>
    <cmdline>$(guest_cmdline)</cmdline>
  </os>
  <features><acpi/></features>
  <cpu mode='maximum'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>$(command -v "$QEMU_SYSTEM")</emulator>
    <disk type='network' device='disk'>
      <driver name='qemu' type='raw' cache='none' io='threads' discard='unmap'/>
      <source protocol='nbd' name='$NBD_EXPORT'>
        $3
      </source>
      <target dev='vda' bus='virtio'/>
    </disk>
    <serial type='file'>
      <source path='$2'/>
      <target port='0'/>
    </serial>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
EOF
}

rc=0
for transport in unix tcp; do
  name=blkguest-$transport-$$
  serial=$G/serial-$transport.log
  if [ $transport = unix ]; then
    host="<host transport='unix' socket='$NBD_SOCK'/>"; uri=$NBD_UNIX_URI
  else
    host="<host name='127.0.0.1' port='$NBD_PORT'/>"; uri=$NBD_TCP_URI
  fi
  domain_xml "$name" "$serial" "$host" >"$TEST_DIR/domain-$transport.xml"
  glog "---- domain $name: disk $host"
  lv_domain_run "$name" "$TEST_DIR/domain-$transport.xml" "$serial" || { echo "FAIL($transport): domain"; rc=1; continue; }
  guest_verdict "$serial" || { echo "FAIL($transport): guest"; rc=1; continue; }
  grep -q 'nbd' "$(lv_qemu_log "$name")" || { echo "FAIL($transport): QEMU's command line has no nbd disk"; rc=1; }
  verify_nbd "$uri" "$serial" || { echo "FAIL($transport): host re-read through NBD differs"; rc=1; }
  export_dump "$TEST_DIR/dump.img"
  verify_file "$TEST_DIR/dump.img" "$serial" || { echo "FAIL($transport): image export differs"; rc=1; }
  rm -f "$TEST_DIR/dump.img"
  tr -d '\r' <"$serial" | sed -n "s/^BLKGUEST: \(seq\(write\|read\)\) /RESULT libvirt-$transport \1 /p"
done
[ -z "$(lv_virsh list --all --name | grep blkguest-)" ] || { echo "FAIL: domains left defined"; rc=1; }

# ---- 5. the secret goes with the domains
lv_virsh secret-undefine "$SECRET_UUID" >/dev/null || fail "virsh secret-undefine"
LV_SECRETS=()
[ -z "$(lv_virsh secret-list)" ] || fail "secret still listed after undefine"
export_stop || rc=1
[ $rc = 0 ] || fail "see above"
glog "total $(( $(date +%s) - T0 ))s"
echo PASS
