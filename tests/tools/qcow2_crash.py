#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
# qcow2_crash.py - crash safety: kill -9 sluice-io during allocating writes on qcow2; qemu-img check finds no corruption and every flushed write reads back.
#
#   qcow2_crash.py SLUICE_IMG SLUICE_IO SCRATCH_DIR [ROUNDS]
# Each round feeds sluice-io (on stdin) allocating writes of distinct patterns, a 'flush' followed by a
# 'length' marker every few writes, and kills it with SIGKILL at a random time.  A write is durable once
# the marker after its flush was printed.  Afterwards: qemu-img check exits 0 or 3 (leaks allowed) and
# sluice-img check agrees; every 4 KiB block holds its last durable pattern or that of a later
# (unconfirmed) write.  The image carries over to the next round (what was read becomes the model).
import os
import random
import shutil
import signal
import subprocess
import sys
import time

BLK = 4096


def main():
    img_tool, io_tool, scratch = (os.path.realpath(a) for a in sys.argv[1:4])
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 24
    print("TAP version 13\n1..3")
    if not shutil.which("qemu-img"):
        for i, n in enumerate(("rounds", "final check", "final content"), 1):
            print("ok %d %s # SKIP qemu-img is not installed" % (i, n))
        return 4
    os.makedirs(scratch, exist_ok=True)
    img = os.path.join(scratch, "crash.qcow2")
    raw = os.path.join(scratch, "crash.raw")
    size = 32 << 20
    nblk = size // BLK
    rnd = random.Random(int(os.environ.get("SLUICE_CRASH_SEED", "1")))
    for f in (img,):
        if os.path.exists(f):
            os.unlink(f)
    subprocess.run([img_tool, "create", "-q", "-f", "qcow2", "-o", "cluster_size=64k", img, str(size)],
                   check=True)
    model = [0] * nblk          # the byte every block holds
    failures = []
    pattern = 0
    stats = {"durable": 0, "writes": 0, "leaky": 0}

    for r in range(rounds):
        cmds, groups, cur = [], [], []
        for i in range(600):
            pattern = pattern % 255 + 1
            nb = rnd.choice((1, 1, 2, 3, 8, 16, 20, 33))
            first = rnd.randrange(0, nblk - nb + 1)
            cmds.append("write -P %d %d %d" % (pattern, first * BLK, nb * BLK))
            cur.append((first, nb, pattern))
            if len(cur) == 8:
                cmds += ["flush", "length"]
                groups.append(cur)
                cur = []
        groups.append(cur)
        p = subprocess.Popen([io_tool, "-f", "qcow2", img], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        p.stdin.write(("\n".join(cmds) + "\n").encode())
        p.stdin.close()
        time.sleep(rnd.uniform(0.02, 0.6))
        p.send_signal(signal.SIGKILL)
        out = p.stdout.read().decode(errors="replace")
        p.wait()
        markers = sum(1 for line in out.splitlines() if line.endswith("MiB") and "ops" not in line)
        durable = [w for g in groups[:markers] for w in g]
        later = [w for g in groups[markers:] for w in g]
        stats["durable"] += len(durable)
        stats["writes"] += len(durable) + len(later)

        chk = subprocess.run(["qemu-img", "check", img], capture_output=True, text=True)
        if chk.returncode not in (0, 3):
            failures.append("round %d: qemu-img check exit %d: %s" % (r, chk.returncode,
                                                                     chk.stdout.strip()))
            break
        stats["leaky"] += chk.returncode == 3
        own = subprocess.run([img_tool, "check", img], capture_output=True, text=True)
        if own.returncode != chk.returncode:
            failures.append("round %d: sluice-img check exit %d, qemu-img check %d" %
                            (r, own.returncode, chk.returncode))

        allowed = [None] * nblk
        for first, nb, pat in durable:
            for b in range(first, first + nb):
                model[b] = pat
        for first, nb, pat in later:
            for b in range(first, first + nb):
                if allowed[b] is None:
                    allowed[b] = {model[b]}
                allowed[b].add(pat)
        subprocess.run(["qemu-img", "convert", "-O", "raw", img, raw], check=True)
        with open(raw, "rb") as f:
            data = f.read()
        bad = 0
        for b in range(nblk):
            blk = data[b * BLK:(b + 1) * BLK]
            val = blk[0]
            ok = blk.count(val) == BLK and (val == model[b] if allowed[b] is None else val in allowed[b])
            if not ok:
                bad += 1
                if bad <= 3:
                    failures.append("round %d: block %d holds %r..., expected %s" %
                                    (r, b, blk[:4], model[b] if allowed[b] is None else sorted(allowed[b])))
            model[b] = val
        if bad:
            break
        # Now and then the leaks are repaired by sluice-img (the next rounds run on the repaired image).
        if chk.returncode == 3 and r % 3 == 2:
            rep = subprocess.run([img_tool, "check", "-r", "leaks", img], capture_output=True, text=True)
            again = subprocess.run(["qemu-img", "check", img], capture_output=True, text=True)
            if rep.returncode != 0 or again.returncode != 0:
                failures.append("round %d: sluice-img check -r leaks exit %d, then qemu-img check %d" %
                                (r, rep.returncode, again.returncode))
                break

    print("# %d rounds, %d writes issued, %d confirmed durable, %d rounds left leaks" %
          (rounds, stats["writes"], stats["durable"], stats["leaky"]))
    for f in failures:
        print("# " + f)
    print("%s 1 %d rounds of kill -9 during allocating writes" % ("not ok" if failures else "ok", rounds))
    fin = subprocess.run([img_tool, "check", "-r", "leaks", img], capture_output=True, text=True)
    q = subprocess.run(["qemu-img", "check", img], capture_output=True, text=True)
    print("%s 2 after sluice-img check -r leaks, qemu-img check is clean" %
          ("ok" if fin.returncode == 0 and q.returncode == 0 else "not ok"))
    io = subprocess.run([io_tool, "-r", "-f", "qcow2", "-c", "read 0 1M", img], capture_output=True)
    print("%s 3 the image still opens and reads" % ("ok" if io.returncode == 0 else "not ok"))
    shutil.rmtree(scratch, ignore_errors=True)
    return 1 if failures or fin.returncode or q.returncode or io.returncode else 0


if __name__ == "__main__":
    sys.exit(main())
