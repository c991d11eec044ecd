#!/usr/bin/env python3
"""Writes synthetic layer trees for the extraction benchmarks.

gen.py small DIR   100,000 small files (0-8 KiB of text-like data) in 1,000 directories,
                   with some symlinks and hardlinks: a typical distro/userland layer.
gen.py large DIR   4 files of 64 MiB (compressible but not trivially).
"""
import os
import random
import sys

WORDS = [w.encode() for w in (
    "the of and to in is for on that with as by at from this be or are an it not"
    " lib usr bin share locale python module config static void int return struct"
    " include define const char unsigned long size_t error warning debug info").split()]


def blob(rng, n):
    out = bytearray()
    while len(out) < n:
        out += rng.choice(WORDS) + (b"\n" if rng.random() < 0.1 else b" ")
        if rng.random() < 0.02:
            out += rng.randbytes(16)
    return bytes(out[:n])


def small(root):
    rng = random.Random(1)
    for d in range(1000):
        dpath = os.path.join(root, f"usr/lib/pkg{d // 100}/mod{d}")
        os.makedirs(dpath, exist_ok=True)
        for f in range(100):
            p = os.path.join(dpath, f"file{f}.py")
            with open(p, "wb") as fh:
                fh.write(blob(rng, int(rng.expovariate(1 / 2000)) % 8192))
        os.symlink("file0.py", os.path.join(dpath, "link.py"))
        os.link(os.path.join(dpath, "file1.py"), os.path.join(dpath, "hard.py"))


def large(root):
    rng = random.Random(2)
    os.makedirs(root, exist_ok=True)
    chunk = blob(rng, 1 << 20)
    for i in range(4):
        with open(os.path.join(root, f"big{i}.bin"), "wb") as fh:
            for j in range(64):
                fh.write(chunk[j * 997:] + rng.randbytes(4096) + chunk[: j * 997])


if __name__ == "__main__":
    {"small": small, "large": large}[sys.argv[1]](sys.argv[2])
