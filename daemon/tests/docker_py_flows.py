"""docker-py (7.x) flows against berthd, run by daemon/tests/clients.rs.

    python3 docker_py_flows.py unix:///PATH/TO/SOCKET IMAGE

Prints one line per flow checked and exits 0; an assertion failure exits non-zero with
a traceback.
"""
import os
import shutil
import sys
import tempfile
import time

import docker

base_url, image = sys.argv[1], sys.argv[2]
client = docker.DockerClient(base_url=base_url, timeout=60)


def check(name, cond, detail=""):
    assert cond, f"{name}: {detail}"
    print(f"ok {name}")


version = client.api.version()
check("api.version", version["ApiVersion"] == "1.47" and version["Os"] == "linux", version)
check("ping", client.ping() is True)

pulled = client.images.pull(image, tag="latest")
check("images.pull", f"{image}:latest" in pulled.tags, pulled.tags)
listed = [t for i in client.images.list() for t in i.tags]
check("images.list", f"{image}:latest" in listed, listed)
check("images.get", client.images.get(image).id == pulled.id)

out = client.containers.run(image, ["sh", "-c", "echo hi; echo err >&2"], remove=True)
check("containers.run remove=True", out == b"hi\n", out)
out = client.containers.run(
    image, ["sh", "-c", "echo hi; echo err >&2"], remove=True, stdout=False, stderr=True
)
check("containers.run stderr", out == b"err\n", out)
try:
    client.containers.run(image, ["sh", "-c", "echo bad; exit 3"], remove=True)
    raise AssertionError("a failing run raised nothing")
except docker.errors.ContainerError as e:
    check("containers.run ContainerError", e.exit_status == 3, e)
check("removed", client.containers.list(all=True) == [], client.containers.list(all=True))

c = client.containers.run(
    image,
    ["sh", "-c", "trap 'exit 0' TERM; echo started; while :; do sleep 0.1; done"],
    detach=True,
    name="pyc",
)
c.reload()
check("run detach", c.status == "running" and c.name == "pyc", c.status)
for _ in range(300):
    if b"started" in c.logs():
        break
    time.sleep(0.1)
check("logs", c.logs() == b"started\n", c.logs())
check("containers.get", client.containers.get("pyc").id == c.id)
check("containers.list", [x.id for x in client.containers.list()] == [c.id])

r = c.exec_run(["sh", "-c", "echo ex; exit 3"])
check("exec_run exit code", r.exit_code == 3 and r.output == b"ex\n", r)
r = c.exec_run(["sh", "-c", "exit 4"])
check("exec_run silent exit code", r.exit_code == 4, r)
r = c.exec_run(["sh", "-c", "echo o; echo e >&2"], demux=True)
check("exec_run demux", r.output == (b"o\n", b"e\n"), r)
r = c.exec_run(["id", "-u"], user="nobody")
check("exec_run user", r.output == b"65534\n", r)
r = c.exec_run(["sh", "-c", "echo $FOO"], environment={"FOO": "bar"})
check("exec_run environment", r.output == b"bar\n", r)

c.stop(timeout=5)
c.reload()
check("stop", c.status == "exited" and c.attrs["State"]["ExitCode"] == 0, c.attrs["State"])
check("wait", c.wait(timeout=30)["StatusCode"] == 0)
c.remove()
try:
    client.containers.get("pyc")
    raise AssertionError("removed container still found")
except docker.errors.NotFound:
    check("remove", True)

try:
    client.containers.get("nosuch")
    raise AssertionError("no NotFound")
except docker.errors.NotFound as e:
    check("NotFound", "No such container" in str(e), e)

# The classic builder (POST /build): a context directory tarred by docker-py.
ctx = tempfile.mkdtemp(prefix="pybuild-")
with open(os.path.join(ctx, "Dockerfile"), "w") as f:
    f.write(f'FROM {image}\nCOPY data.txt /data.txt\nRUN echo built >> /data.txt\nCMD ["cat", "/data.txt"]\n')
with open(os.path.join(ctx, "data.txt"), "w") as f:
    f.write("data\n")
built, logs = client.images.build(path=ctx, tag="pybuilt:1")
check("images.build", "pybuilt:1" in built.tags, built.tags)
text = "".join(chunk.get("stream", "") for chunk in logs)
check("images.build logs", "Step 3/4" in text and "Successfully tagged pybuilt:1" in text, text)
out = client.containers.run("pybuilt:1", remove=True)
check("built image runs", out == b"data\nbuilt\n", out)
with open(os.path.join(ctx, "Dockerfile"), "w") as f:
    f.write(f"FROM {image}\nRUN echo failing; exit 5\n")
try:
    client.images.build(path=ctx, tag="pybroken:1")
    raise AssertionError("a failing build raised nothing")
except docker.errors.BuildError as e:
    check("images.build BuildError", "non-zero code: 5" in str(e), e)
try:
    client.images.get("pybroken:1")
    raise AssertionError("a failed build was tagged")
except docker.errors.ImageNotFound:
    check("failed build tags nothing", True)
check("build leaves no container", client.containers.list(all=True) == [], client.containers.list(all=True))
client.images.remove("pybuilt:1")
shutil.rmtree(ctx)

print("all flows ok")
