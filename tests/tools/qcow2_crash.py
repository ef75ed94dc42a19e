#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
# qcow2_crash.py - crash safety: kill -9 sluice-io during allocating writes on qcow2; qemu-img check finds no corruption and every flushed write reads back.
#
#   qcow2_crash.py SLUICE_IMG SLUICE_IO SCRATCH_DIR [ROUNDS]
# Three images, ROUNDS rounds each (default 12):
#   1. 64 KiB clusters: allocating writes of 4 KiB to 132 KiB;
#   2. 64 KiB clusters over a raw backing file: every partial write to an unallocated cluster copies the
#      rest of the cluster from the backing file (COW);
#   3. 4 KiB clusters: a 32 MiB disk needs 16 L2 tables and 2 refcount blocks, so allocations keep
#      crossing into new L2 tables and refcount blocks (and growing the refcount table); discards and
#      write-zeroes are mixed in.
# Each round feeds sluice-io (on stdin) distinct patterns, a 'flush' followed by a 'length' marker every
# few operations, and kills it with SIGKILL at a random time.  An operation is durable once the marker
# after its flush was printed.  Afterwards: qemu-img check exits 0 or 3 (leaks allowed) and sluice-img
# check agrees; every 4 KiB block holds its last durable value (the backing file's before any write) or
# that of a later, unconfirmed operation; a block under an unconfirmed discard may hold anything (its
# clusters may have been reused before the discard reached the file).  The image carries over to the
# next round (what was read becomes the model).
import os
import random
import shutil
import signal
import subprocess
import sys
import time

BLK = 4096
SIZE = 32 << 20
NBLK = SIZE // BLK
DISCARD = -1        # an operation's value: the blocks were discarded
ANY = frozenset()   # allowed[b]: any (uniform) content


def backing_value(b):
    return 200 + b % 53 if b % 3 else 0


def run_phase(name, img_tool, io_tool, scratch, rounds, rnd, cluster, backing, mix):
    """One image through @rounds kill -9 rounds; returns (failures, stats)."""
    img = os.path.join(scratch, "crash.qcow2")
    raw = os.path.join(scratch, "crash.raw")
    base = os.path.join(scratch, "base.raw")
    for f in (img, raw, base):
        if os.path.exists(f):
            os.unlink(f)
    model = [0] * NBLK          # the byte every block holds
    create = [img_tool, "create", "-q", "-f", "qcow2", "-o", "cluster_size=%s" % cluster]
    if backing:
        with open(base, "wb") as f:
            for b in range(NBLK):
                f.write(bytes([backing_value(b)]) * BLK)
        model = [backing_value(b) for b in range(NBLK)]
        create += ["-b", base, "-F", "raw"]
    subprocess.run(create + [img, str(SIZE)], check=True)
    failures = []
    pattern = 0
    stats = {"durable": 0, "ops": 0, "leaky": 0}

    for r in range(rounds):
        cmds, groups, cur = [], [], []
        for i in range(600):
            pattern = pattern % 150 + 1     # 1..150: apart from the backing file's values
            nb = rnd.choice((1, 1, 2, 3, 8, 16, 20, 33))
            first = rnd.randrange(0, NBLK - nb + 1)
            kind = rnd.choices(("write", "zero", "discard"), mix)[0]
            if kind == "write":
                cmds.append("write -P %d %d %d" % (pattern, first * BLK, nb * BLK))
                cur.append((first, nb, pattern))
            elif kind == "zero":
                cmds.append("write -z %d %d" % (first * BLK, nb * BLK))
                cur.append((first, nb, 0))
            else:
                cmds.append("discard %d %d" % (first * BLK, nb * BLK))
                cur.append((first, nb, DISCARD))  # flushed: reads as zeroes (no backing file here)
            if len(cur) == 8:
                cmds += ["flush", "length"]
                groups.append(cur)
                cur = []
        groups.append(cur)
        p = subprocess.Popen([io_tool, "-f", "qcow2", img], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        p.stdin.write(("\n".join(cmds) + "\n").encode())
        p.stdin.close()
        time.sleep(rnd.uniform(0.005, 0.3))
        p.send_signal(signal.SIGKILL)
        out = p.stdout.read().decode(errors="replace")
        p.wait()
        markers = sum(1 for line in out.splitlines() if line.endswith("MiB") and "ops" not in line)
        durable = [w for g in groups[:markers] for w in g]
        later = [w for g in groups[markers:] for w in g]
        stats["durable"] += len(durable)
        stats["ops"] += len(durable) + len(later)

        chk = subprocess.run(["qemu-img", "check", img], capture_output=True, text=True)
        if chk.returncode not in (0, 3):
            failures.append("%s, round %d: qemu-img check exit %d: %s" % (name, r, chk.returncode,
                                                                         chk.stdout.strip()))
            break
        stats["leaky"] += chk.returncode == 3
        own = subprocess.run([img_tool, "check", img], capture_output=True, text=True)
        if own.returncode != chk.returncode:
            failures.append("%s, round %d: sluice-img check exit %d, qemu-img check %d" %
                            (name, r, own.returncode, chk.returncode))

        allowed = [None] * NBLK
        for first, nb, val in durable:
            for b in range(first, first + nb):
                model[b] = 0 if val == DISCARD else val
        for first, nb, val in later:
            for b in range(first, first + nb):
                if allowed[b] is None:
                    allowed[b] = {model[b]}
                if val == DISCARD or allowed[b] is ANY:
                    # An unflushed discard frees its clusters at once and the next
                    # allocation may reuse them; the old L2 entry may still be what
                    # the file holds, so after the crash the range may show what the
                    # reuse wrote.  The guest threw those blocks away: any content.
                    allowed[b] = ANY
                else:
                    allowed[b].add(val)
        subprocess.run(["qemu-img", "convert", "-O", "raw", img, raw], check=True)
        with open(raw, "rb") as f:
            data = f.read()
        bad = 0
        for b in range(NBLK):
            blk = data[b * BLK:(b + 1) * BLK]
            val = blk[0]
            ok = blk.count(val) == BLK and (val == model[b] if allowed[b] is None else
                                            allowed[b] is ANY or val in allowed[b])
            if not ok:
                bad += 1
                if bad <= 3:
                    failures.append("%s, round %d: block %d holds %r..., expected %s" %
                                    (name, r, b, blk[:4], model[b] if allowed[b] is None else
                                     "one value" if allowed[b] is ANY else sorted(allowed[b])))
            model[b] = val
        if bad:
            break
        # Now and then the leaks are repaired by sluice-img (the next rounds run on the repaired image).
        if chk.returncode == 3 and r % 3 == 2:
            rep = subprocess.run([img_tool, "check", "-r", "leaks", img], capture_output=True, text=True)
            again = subprocess.run(["qemu-img", "check", img], capture_output=True, text=True)
            if rep.returncode != 0 or again.returncode != 0:
                failures.append("%s, round %d: sluice-img check -r leaks exit %d, then qemu-img check %d" %
                                (name, r, rep.returncode, again.returncode))
                break
    if not failures:
        fin = subprocess.run([img_tool, "check", "-r", "leaks", img], capture_output=True, text=True)
        q = subprocess.run(["qemu-img", "check", img], capture_output=True, text=True)
        if fin.returncode or q.returncode:
            failures.append("%s: after sluice-img check -r leaks exit %d, qemu-img check exit %d" %
                            (name, fin.returncode, q.returncode))
        io = subprocess.run([io_tool, "-r", "-f", "qcow2", "-c", "read 0 1M", img], capture_output=True)
        if io.returncode:
            failures.append("%s: the image no longer opens and reads" % name)
    return failures, stats


def main():
    img_tool, io_tool, scratch = (os.path.realpath(a) for a in sys.argv[1:4])
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 12
    phases = (
        ("64k clusters", "64k", False, (1, 0, 0)),
        ("64k clusters over a backing file (COW)", "64k", True, (1, 0, 0)),
        ("4k clusters (L2 and refcount-block allocations), discard, write-zeroes", "4k", False, (6, 1, 1)),
    )
    print("TAP version 13\n1..%d" % len(phases))
    if not shutil.which("qemu-img"):
        for i, ph in enumerate(phases, 1):
            print("ok %d %s # SKIP qemu-img is not installed" % (i, ph[0]))
        return 4
    os.makedirs(scratch, exist_ok=True)
    rnd = random.Random(int(os.environ.get("SLUICE_CRASH_SEED", "1")))
    status = 0
    for i, (name, cluster, backing, mix) in enumerate(phases, 1):
        failures, st = run_phase(name, img_tool, io_tool, scratch, rounds, rnd, cluster, backing, mix)
        print("# %s: %d rounds, %d operations issued, %d confirmed durable, %d rounds left leaks" %
              (name, rounds, st["ops"], st["durable"], st["leaky"]))
        for f in failures:
            print("# " + f)
        print("%s %d kill -9 during allocating writes: %s" % ("not ok" if failures else "ok", i, name))
        status |= 1 if failures else 0
    shutil.rmtree(scratch, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
