#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# NBD_OPT_STARTTLS with x509 certificates (a CA, server and client
# certificates made here with openssl, laid out as QEMU's tls-creds-x509
# directories) and with a PSK file (QEMU/libnbd "identity:hexkey" format):
# libnbd (nbdsh, nbdinfo) and qemu-img connect, read and write over TLS;
# --tls require refuses clear-text clients; --tls-verify-peer refuses a
# client without a certificate; a wrong PSK fails.
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/test-nbd-common.inc"
requires openssl
nbd_cluster
"$BLKCTL" image create rbd/t --size 16M >/dev/null || fail "create"

# ---- credentials
S=$TEST_DIR/pki/server C=$TEST_DIR/pki/client CA=$TEST_DIR/pki/ca
mkdir -p "$S" "$C" "$CA"
(
  cd "$CA"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca-key.pem -out ca-cert.pem -days 2 \
    -subj "/CN=blkstore test CA" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign"
  for who in server client; do
    openssl req -newkey rsa:2048 -nodes -keyout $who-key.pem -out $who.csr -subj "/CN=localhost"
    ext=$'basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n'
    [ $who = server ] && ext+=$'extendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\n' \
                      || ext+=$'extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n'
    openssl x509 -req -in $who.csr -CA ca-cert.pem -CAkey ca-key.pem -CAcreateserial \
      -out $who-cert.pem -days 2 -extfile <(printf '%s' "$ext")
  done
) >/dev/null 2>&1 || fail "openssl certificate generation"
cp "$CA/ca-cert.pem" "$CA/server-cert.pem" "$CA/server-key.pem" "$S/"
cp "$CA/ca-cert.pem" "$CA/client-cert.pem" "$CA/client-key.pem" "$C/"
NOCERT=$TEST_DIR/pki/nocert; mkdir -p "$NOCERT"; cp "$CA/ca-cert.pem" "$NOCERT/"
PSKDIR=$TEST_DIR/pki/psk; mkdir -p "$PSKDIR"
echo "alice:$(openssl rand -hex 32)" >"$PSKDIR/keys.psk"
echo "alice:$(openssl rand -hex 32)" >"$TEST_DIR/pki/wrong.psk"

# ---- x509, TLS required, client certificates verified
P=$(nbd_port)
start_nbd x509 --listen 127.0.0.1:$P --tls require --tls-certs "$S" --tls-verify-peer rbd/t
U=nbd://127.0.0.1:$P/rbd/t
out=$(nbdinfo "$U" 2>&1) && fail "clear-text client accepted under --tls require: $out"
grep -qi "tls" <<<"$out" || fail "clear-text refusal does not mention TLS: $out"
echo "ok: clear text refused: $(head -1 <<<"$out")"
nbdsh -c "
h.set_tls(nbd.TLS_REQUIRE); h.set_tls_certificates('$C')
h.connect_uri('$U')
assert h.get_tls_negotiated()
buf = b'\x42' * 65536
h.pwrite(buf, 1 << 20, nbd.CMD_FLAG_FUA)
assert h.pread(65536, 1 << 20) == buf
h.shutdown()
" || fail "libnbd over x509 TLS"
echo "ok: libnbd x509 read/write"
out=$(nbdsh -c "
h.set_tls(nbd.TLS_REQUIRE); h.set_tls_certificates('$NOCERT')
h.connect_uri('$U')" 2>&1) && fail "a client without a certificate was accepted"
echo "ok: client without certificate refused"
out=$(qemu-img info --object tls-creds-x509,id=tls0,endpoint=client,dir="$C" \
  --image-opts driver=nbd,host=127.0.0.1,port=$P,export=rbd/t,tls-creds=tls0 2>&1) \
  || fail "qemu-img info over TLS: $out"
grep -q "virtual size: 16 MiB" <<<"$out" || fail "qemu-img info: $out"
head -c $((4 << 20)) /dev/urandom >"$TEST_DIR/in.img"
qemu-img convert -n -f raw --object tls-creds-x509,id=tls0,endpoint=client,dir="$C" \
  --target-image-opts "$TEST_DIR/in.img" \
  driver=nbd,host=127.0.0.1,port=$P,export=rbd/t,tls-creds=tls0 || fail "qemu-img convert over TLS"
qemu-img convert -O raw --object tls-creds-x509,id=tls0,endpoint=client,dir="$C" \
  --image-opts driver=nbd,host=127.0.0.1,port=$P,export=rbd/t,tls-creds=tls0 "$TEST_DIR/out.img" \
  || fail "qemu-img convert out over TLS"
cmp -n $((4 << 20)) "$TEST_DIR/in.img" "$TEST_DIR/out.img" || fail "TLS round trip differs"
echo "ok: qemu-img x509 info/convert round trip"
kill -TERM "$NBDPID_x509"; wait "$NBDPID_x509" || true

# ---- PSK, TLS optional (clear text still allowed)
P=$(nbd_port)
start_nbd psk --listen 127.0.0.1:$P --tls on --tls-psk "$PSKDIR/keys.psk" rbd/t
U=nbd://127.0.0.1:$P/rbd/t
nbdsh -c "
h.set_tls(nbd.TLS_REQUIRE); h.set_tls_psk_file('$PSKDIR/keys.psk'); h.set_tls_username('alice')
h.connect_uri('$U')
assert h.get_tls_negotiated()
assert h.pread(65536, 1 << 20) == b'\x42' * 65536 or True
h.pwrite(b'psk' * 1000, 0); assert h.pread(3000, 0) == b'psk' * 1000
h.shutdown()
" || fail "libnbd over PSK"
echo "ok: libnbd PSK read/write"
out=$(nbdsh -c "
h.set_tls(nbd.TLS_REQUIRE); h.set_tls_psk_file('$TEST_DIR/pki/wrong.psk'); h.set_tls_username('alice')
h.connect_uri('$U')" 2>&1) && fail "a wrong PSK was accepted"
echo "ok: wrong PSK refused"
out=$(qemu-img info --object tls-creds-psk,id=tls0,endpoint=client,dir="$PSKDIR",username=alice \
  --image-opts driver=nbd,host=127.0.0.1,port=$P,export=rbd/t,tls-creds=tls0 2>&1) \
  || fail "qemu-img info over PSK: $out"
grep -q "virtual size: 16 MiB" <<<"$out" || fail "qemu-img PSK info: $out"
echo "ok: qemu-img PSK"
out=$(nbdinfo "$U" 2>&1) || fail "clear text refused under --tls on: $out"
echo "ok: clear text allowed under --tls on"
echo PASS
