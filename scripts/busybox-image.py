#!/usr/bin/env python3
"""Builds the default busybox image as an OCI image layout, offline, from Debian's
busybox-static: one gzip layer (busybox, an applet symlink each, /etc/passwd and /etc/group,
/tmp, /root, /home) and a config whose Cmd is `sh`.

    scripts/busybox-image.py OUT_DIR [NAME] [LAYER.tar ...]   (NAME default: busybox:latest)

BUSYBOX_IMAGE_CMD (a JSON array) replaces the config's Cmd: the CRI test builds its pause image
this way.

Each LAYER.tar (uncompressed) is stacked on top, gzip-compressed: tests use it for images
with whiteouts. Then: berth image import OUT_DIR
"""
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import time

out = sys.argv[1]
name = sys.argv[2] if len(sys.argv) > 2 else "busybox:latest"
extra = sys.argv[3:]
busybox = "/bin/busybox"
applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout.split()
# A fixed mtime makes the layer (and so the image ID) the same on every machine.
mtime = 1700000000

raw = io.BytesIO()
with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
    def add(name, type_, mode, data=b"", link=""):
        ti = tarfile.TarInfo(name)
        ti.type, ti.mode, ti.mtime, ti.linkname = type_, mode, mtime, link
        ti.size = len(data)
        t.addfile(ti, io.BytesIO(data) if data else None)
    for d, m in [("bin", 0o755), ("etc", 0o755), ("tmp", 0o1777), ("root", 0o700), ("home", 0o755),
                 ("proc", 0o755), ("sys", 0o755), ("dev", 0o755), ("var", 0o755), ("usr", 0o755)]:
        add(d, tarfile.DIRTYPE, m)
    with open(busybox, "rb") as f:
        add("bin/busybox", tarfile.REGTYPE, 0o755, f.read())
    for a in sorted(set(applets)):
        if a != "busybox":
            add("bin/" + a, tarfile.SYMTYPE, 0o777, link="busybox")
    add("etc/passwd", tarfile.REGTYPE, 0o644,
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n")
    add("etc/group", tarfile.REGTYPE, 0o644, b"root:x:0:\nnogroup:x:65534:\n")
raws = [raw.getvalue()]
for path in extra:
    with open(path, "rb") as f:
        raws.append(f.read())

os.makedirs(os.path.join(out, "blobs", "sha256"), exist_ok=True)


def blob(data):
    h = hashlib.sha256(data).hexdigest()
    with open(os.path.join(out, "blobs", "sha256", h), "wb") as f:
        f.write(data)
    return "sha256:" + h, len(data)


config = {
    "architecture": "amd64",
    "os": "linux",
    "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(mtime)),
    "config": {
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Cmd": json.loads(os.environ.get("BUSYBOX_IMAGE_CMD", '["sh"]')),
        "WorkingDir": "/",
    },
    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(r).hexdigest() for r in raws]},
    "history": [{"created_by": "scripts/busybox-image.py from " + busybox}],
}
cfg_d, cfg_n = blob(json.dumps(config, sort_keys=True).encode())
layers = [blob(gzip.compress(r, compresslevel=6, mtime=0)) for r in raws]
manifest = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg_d, "size": cfg_n},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": n}
               for d, n in layers],
}
man_d, man_n = blob(json.dumps(manifest, sort_keys=True).encode())
index = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.index.v1+json",
    "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": man_d, "size": man_n,
        "platform": {"architecture": "amd64", "os": "linux"},
        "annotations": {"io.containerd.image.name": name,
                        "org.opencontainers.image.ref.name": name.rsplit(":", 1)[-1]},
    }],
}
with open(os.path.join(out, "index.json"), "w") as f:
    json.dump(index, f)
with open(os.path.join(out, "oci-layout"), "w") as f:
    json.dump({"imageLayoutVersion": "1.0.0"}, f)
print(out)
