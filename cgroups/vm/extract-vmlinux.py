#!/usr/bin/env python3
"""Extract the uncompressed ELF vmlinux from a bzImage (like the kernel's
scripts/extract-vmlinux): try every xz/gzip/zstd/lzma payload start until one decompresses to
an ELF file. Usage: extract-vmlinux.py BZIMAGE OUT"""
import gzip, lzma, shutil, subprocess, sys, zlib

src, out = sys.argv[1], sys.argv[2]
data = open(src, "rb").read()

def xz(b):
    return lzma.LZMADecompressor(lzma.FORMAT_XZ).decompress(b)

def gz(b):
    return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(b)

def zst(b):
    if not shutil.which("zstd"):
        raise ValueError("zstd not installed")
    return subprocess.run(["zstd", "-dqc"], input=b, capture_output=True).stdout

for magic, fn in ((b"\xfd7zXZ\x00", xz), (b"\x1f\x8b\x08", gz), (b"\x28\xb5\x2f\xfd", zst)):
    pos = data.find(magic)
    while pos >= 0:
        try:
            body = fn(data[pos:])
            if body[:4] == b"\x7fELF":
                open(out, "wb").write(body)
                sys.exit(0)
        except Exception:
            pass
        pos = data.find(magic, pos + 1)
sys.exit(f"extract-vmlinux: no ELF payload found in {src}")
