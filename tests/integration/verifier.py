#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Object write verifier for the OSD integration tests (invariant I1).

  verifier.py write DIR POOL --writers N --seconds S --objects K
      N writer threads, each owning K object names, put objects of random
      size (0..256 KiB) and random contents (and sometimes remove one)
      through `blkctl object`; every attempt is recorded in DIR/log.jsonl
      with its outcome: acknowledged (exit 0) or failed (anything else).
  verifier.py check DIR POOL [--replicas]
      For every name, the acceptable final states are the last acknowledged
      one plus those of later failed attempts (a failed write may or may
      not have happened).  The primary's copy must be one of them; with
      --replicas, every OSD of the object's acting set (blkctl osd map)
      must hold a byte-identical copy (debug read of its own copy).
Exit status 0 when everything holds; problems are printed.
"""
import argparse, hashlib, json, os, random, subprocess, sys, threading, time

BLKCTL = os.path.join(os.environ["BLK_BUILD_DIR"], "client", "blkctl")


def blkctl(*args, data=None, timeout=120):
    p = subprocess.run([BLKCTL, "--timeout", "60"] + list(args), input=data,
                       capture_output=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr.decode(errors="replace")


def digest(b):
    return hashlib.sha256(b).hexdigest() if b is not None else "absent"


def writer(wid, a, lock, out, stop_at):
    rnd = random.Random(os.urandom(8) + bytes([wid]))
    names = ["%sw%d-o%d" % (a.prefix, wid, k) for k in range(a.objects)]
    seq = 0
    while time.time() < stop_at:
        name = rnd.choice(names)
        seq += 1
        if rnd.random() < 0.1:
            rc, _, err = blkctl("object", "rm", a.pool, name)
            state = "absent"
        else:
            size = rnd.choice([0, 1, 4096, rnd.randrange(1, 256 * 1024)])
            data = rnd.randbytes(size)
            rc, _, err = blkctl("object", "put", a.pool, name, "-", data=data)
            state = digest(data)
        rec = {"w": wid, "seq": seq, "name": name, "state": state, "ok": rc == 0,
               "rc": rc, "err": err.strip()[-200:], "t": time.time()}
        with lock:
            out.write(json.dumps(rec) + "\n")
            out.flush()


def cmd_write(a):
    os.makedirs(a.dir, exist_ok=True)
    lock = threading.Lock()
    stop_at = time.time() + a.seconds
    with open(os.path.join(a.dir, "log.jsonl"), "a") as out:
        ts = [threading.Thread(target=writer, args=(w, a, lock, out, stop_at))
              for w in range(a.writers)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    recs = [json.loads(l) for l in open(os.path.join(a.dir, "log.jsonl"))]
    ok = sum(r["ok"] for r in recs)
    print("verifier: %d writes, %d acknowledged, %d failed" % (len(recs), ok, len(recs) - ok))
    for r in recs:
        if not r["ok"]:
            print("  failed: %s seq %d rc %d: %s" % (r["name"], r["seq"], r["rc"], r["err"]))


def expected(a):
    recs = [json.loads(l) for l in open(os.path.join(a.dir, "log.jsonl"))]
    per = {}
    # a name belongs to one writer, whose attempts are sequential: time order
    for r in sorted(recs, key=lambda r: r["t"]):
        s = per.setdefault(r["name"], {"acked": "absent", "maybe": set()})
        if r["ok"]:
            s["acked"] = r["state"]
            s["maybe"] = set()
        else:
            s["maybe"].add(r["state"])
    return per, len(recs)


def read(pool, name, osd=None):
    args = ["object", "get", pool, name, "-"]
    if osd is not None:
        args += ["--osd", str(osd)]
    rc, out, err = blkctl(*args)
    if rc == 2:
        return None, None
    if rc != 0:
        return "error", err.strip()
    return out, None


def cmd_check(a):
    per, n = expected(a)
    bad = 0
    for name, s in sorted(per.items()):
        ok_states = {s["acked"]} | s["maybe"]
        data, err = read(a.pool, name)
        if data == "error":
            print("FAIL %s: primary read failed: %s" % (name, err))
            bad += 1
            continue
        d = digest(data)
        if d not in ok_states:
            print("FAIL %s: primary has %s, acknowledged %s (maybe %s)" %
                  (name, d[:12], s["acked"][:12], [m[:12] for m in s["maybe"]]))
            bad += 1
            continue
        if not a.replicas:
            continue
        rc, out, err = blkctl("--format", "json", "osd", "map", a.pool, name)
        acting = json.loads(out)["acting"] if rc == 0 else []
        if len(acting) < a.min_replicas:
            print("FAIL %s: acting set %s too small" % (name, acting))
            bad += 1
        for osd in acting:
            rd, err = read(a.pool, name, osd)
            if digest(rd) != d:
                print("FAIL %s: osd.%d has %s, primary %s %s" %
                      (name, osd, digest(rd)[:12] if rd != "error" else err, d[:12], ""))
                bad += 1
    print("verifier: checked %d objects (%d writes): %d problems" % (len(per), n, bad))
    return 1 if bad else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["write", "check"])
    ap.add_argument("dir")
    ap.add_argument("pool")
    ap.add_argument("--writers", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--objects", type=int, default=10)
    ap.add_argument("--prefix", default="", help="object name prefix (write)")
    ap.add_argument("--replicas", action="store_true")
    ap.add_argument("--min-replicas", type=int, default=3)
    a = ap.parse_args()
    if a.mode == "write":
        cmd_write(a)
        return 0
    return cmd_check(a)


if __name__ == "__main__":
    sys.exit(main())
