# SPDX-License-Identifier: GPL-2.0
# gen_io_script.py - generate a qemu-io command script (writes, zeroes, discards, truncates) and the read -P checks of its result.
#
#   gen_io_script.py SEED SIZE CMDS_OUT VERIFY_OUT
# CMDS_OUT gets one qemu-io command per line, applied to a zeroed raw image of SIZE bytes; VERIFY_OUT
# gets "read -P <byte> off len" lines covering the whole final image (runs of one byte value), computed
# from an in-memory model of the image.
import random
import re
import sys


def main():
    seed, size, cmds_out, verify_out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    rnd = random.Random(seed)
    img = bytearray(size)
    cmds = []

    def rand_len(limit):
        kind = rnd.random()
        if kind < 0.35:
            n = rnd.randint(1, 600)                 # small, unaligned
        elif kind < 0.7:
            n = rnd.randint(1, 16) * 4096           # page multiples
        else:
            n = rnd.randint(1, 200000)              # large, unaligned
        return max(1, min(n, limit))

    def rand_off(length):
        if rnd.random() < 0.5:
            return rnd.randrange(0, len(img) - length + 1)
        return rnd.randrange(0, (len(img) - length) // 4096 + 1) * 4096

    for i in range(48):
        op = rnd.random()
        if op < 0.45:
            n = rand_len(len(img))
            off = rand_off(n)
            pat = rnd.randint(1, 255)
            cmds.append("write -P 0x%02x %d %d" % (pat, off, n))
            img[off:off + n] = bytes([pat]) * n
        elif op < 0.6:
            n = rand_len(len(img))
            off = rand_off(n)
            cmds.append("write -z %d %d" % (off, n))
            img[off:off + n] = bytes(n)
        elif op < 0.75:
            lens = [rand_len(len(img) // 8) for _ in range(rnd.randint(2, 4))]
            n = sum(lens)
            off = rand_off(n)
            pat = rnd.randint(1, 255)
            cmds.append("writev -P %d %d %s" % (pat, off, " ".join(str(x) for x in lens)))
            img[off:off + n] = bytes([pat]) * n
        elif op < 0.9:
            n = rnd.randint(1, 32) * 4096
            off = rnd.randrange(0, (len(img) - n) // 4096 + 1) * 4096
            cmds.append("discard %d %d" % (off, n))
            img[off:off + n] = bytes(n)
        else:
            new = rnd.randint(size // 4096 // 2, size // 4096 * 3 // 2) * 4096
            cmds.append("truncate %d" % new)
            if new < len(img):
                del img[new:]
            else:
                img.extend(bytes(new - len(img)))
    cmds.append("flush")

    with open(cmds_out, "w") as f:
        f.write("\n".join(cmds) + "\n")

    reads = ["read -P 0x%02x %d %d" % (m.group(1)[0], m.start(), m.end() - m.start())
             for m in re.finditer(rb"(.)\1*", bytes(img), re.S)]
    with open(verify_out, "w") as f:
        f.write("\n".join(reads) + "\n")


if __name__ == "__main__":
    main()
