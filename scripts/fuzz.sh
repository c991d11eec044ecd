#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time (FUZZ_SECONDS, default 30) and fails on a
# crash. Seeds come from tests/fixtures (the engines' configs and the spec's example documents).
# cargo-fuzz needs nightly features (-Zsanitizer=address); RUSTC_BOOTSTRAP=1 enables them on the
# stable toolchain that scripts/setup.sh checks, so no nightly is needed. libFuzzer is C++: g++
# (setup.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-30}"
fixtures="$(pwd)/tests/fixtures"
export RUSTC_BOOTSTRAP=1
case ":$PATH:" in
  *":$HOME/.cargo/bin:"*) ;;
  *) [ -d "$HOME/.cargo/bin" ] && PATH="$HOME/.cargo/bin:$PATH" ;;
esac
command -v cargo >/dev/null || { echo "fuzz.sh: no cargo; run scripts/setup.sh first (it checks the Rust toolchain)" >&2; exit 1; }
command -v c++ >/dev/null || { echo "fuzz.sh: libFuzzer needs a C++ compiler: apt-get install g++ (scripts/setup.sh does)" >&2; exit 1; }
if ! command -v cargo-fuzz >/dev/null; then
  echo "fuzz.sh: installing cargo-fuzz (cargo install cargo-fuzz --locked)"
  cargo install cargo-fuzz --locked || {
    echo "fuzz.sh: could not install cargo-fuzz: it needs crates.io and the Rust toolchain scripts/setup.sh checks" >&2
    exit 1
  }
fi

seed() { # seed TARGET FILE...
  local dir="fuzz/corpus/$1"; shift
  mkdir -p "$dir"
  for f in "$@"; do [ -f "$f" ] && cp "$f" "$dir/$(basename "$f")"; done
  return 0
}
seed config_parse "$fixtures"/engines/*.config.json "$fixtures"/runtime-spec/schema/test/config/*/*.json
if command -v jq >/dev/null; then
  mkdir -p fuzz/corpus/seccomp_compile
  for e in docker podman; do
    jq '.linux.seccomp' "$fixtures/engines/$e.example.config.json" > "fuzz/corpus/seccomp_compile/$e.json"
  done
fi
seed process_parse "$fixtures"/engines/*.exec-process.json
mkdir -p fuzz/corpus/state_parse
printf '%s' '{"ociVersion":"1.3.0","id":"c","status":"created","pid":42,"bundle":"/b","rootfs":"/b/rootfs","created":"2026-01-01T00:00:00Z"}' > fuzz/corpus/state_parse/created
mkdir -p fuzz/corpus/mountinfo && cp /proc/self/mountinfo fuzz/corpus/mountinfo/host
mkdir -p fuzz/corpus/mount_options && printf 'nosuid,noexec,newinstance,ptmxmode=0666,mode=0620,gid=5' > fuzz/corpus/mount_options/devpts
# berthd's request parsers (api_request): the first byte picks path, query, create body,
# filters and times, or a name.
mkdir -p fuzz/corpus/api_request
printf '\x00/v1.47/images/localhost%%3A5000%%2Fapp/json' > fuzz/corpus/api_request/path
printf '\x01all=1&filters=%%7B%%22label%%22%%3A%%5B%%22a%%3Db%%22%%5D%%7D&tail=10' > fuzz/corpus/api_request/query
printf '\x02{"Image":"busybox","Cmd":["sh","-c","echo hi"],"Tty":true,"HostConfig":{"Binds":["/a:/b:ro"],"PortBindings":{"80/tcp":[{"HostPort":"8080"}]},"Memory":67108864}}' > fuzz/corpus/api_request/create
printf '\x03{"status":{"running":true},"name":["web"]}' > fuzz/corpus/api_request/filters
printf '\x04web-1.a_b' > fuzz/corpus/api_request/name

# dockerfile_parse: the first byte picks a Dockerfile (0), .dockerignore rules (1) or a word
# to expand (2).
mkdir -p fuzz/corpus/dockerfile_parse
printf '\x00# escape=\\\nARG V=1\nFROM busybox:${V} AS b\nENV A=1 B="x y" \\\n  C=$A\nRUN <<EOF\necho hi\nEOF\nCOPY --chown=1:1 a* /d/\nONBUILD RUN echo t\nHEALTHCHECK --interval=5s CMD true\n' > fuzz/corpus/dockerfile_parse/dockerfile
printf '\x01# c\n*.log\n!keep.log\n**/tmp\nbuild/\n' > fuzz/corpus/dockerfile_parse/ignore
printf '\x02${A:-d}/$A/${B:+x}/\x27$A\x27' > fuzz/corpus/dockerfile_parse/word

# Seeds of the image, registry and volume targets, generated here (small: under libFuzzer's
# default input size): real tar streams, compressed layers, docker and OCI archives,
# passwd/group files, docker configs, each behind the selector bytes the target reads first
# (see the doc comment of each target). Prefixes are printf formats.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
le16() { printf '\\x%02x\\x%02x' $(($1 & 255)) $(($1 >> 8)); } # a two-byte length, as escapes
put() { # put TARGET NAME PREFIX [FILE]: PREFIX's bytes, then FILE's
  mkdir -p "fuzz/corpus/$1"
  { printf "$3"; if [ -n "${4:-}" ]; then cat "$4"; fi; } > "fuzz/corpus/$1/$2"
}
sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }
mkdir -p "$work/tree/etc" "$work/tree/usr/bin" "$work/tree/data"
echo hello > "$work/tree/etc/hello"
echo 'root:x:0:0:root:/root:/bin/sh' > "$work/tree/etc/passwd"
ln -s ../../etc/hello "$work/tree/usr/bin/link"
ln "$work/tree/etc/hello" "$work/tree/data/hard"
touch "$work/tree/.wh.gone" "$work/tree/data/.wh..wh..opq"
tar --blocking-factor=1 --owner=0 --group=0 -C "$work/tree" -cf "$work/layer.tar" .
gzip -9nc "$work/layer.tar" > "$work/layer.tar.gz"
if command -v zstd >/dev/null; then zstd -q -19 -c "$work/layer.tar" > "$work/layer.tar.zst"; fi
# Entries of the hostile alphabet (4 bytes each: kind, name, link, mode and size; see
# fuzz_targets/common/mod.rs).
entries='\x00\x00\x00\x13\x01\x03\x00\x10\x02\x14\x01\x00\x03\x04\x04\x00\x00\x0d\x00\x05\x01\x00\x00\x70'
for sel in 00 02 04 06 0a 1e; do put layer_extract_parallel "tar-$sel" "\\x$sel" "$work/layer.tar"; done
for sel in 01 03 13 23 8b; do put layer_extract_parallel "entries-$sel" "\\x$sel$entries"; done
put layer_open plain '\x00\x01\x00\x00' "$work/layer.tar"
put layer_open gzip '\x00\x02\x00\x00' "$work/layer.tar.gz"
if [ -f "$work/layer.tar.zst" ]; then put layer_open zstd '\x00\x03\x00\x00' "$work/layer.tar.zst"; fi
put layer_open gzip-built "\\x05\\x00\\x00\\x00$entries"
put layer_open zstd-frames "\\x0e\\x00\\x00\\x00$entries"
put layer_open damaged "\\x0b\\x02\\x10\\x00$entries"
put volume_seed tree "\\x07\\x00\\x00\\x10\\x40$entries"
put volume_seed deep "\\x08\\x08\\xff\\xff\\x00$entries"

# A docker-archive and an OCI archive of that layer.
d="$work/docker" && mkdir -p "$d/l"
cp "$work/layer.tar" "$d/l/layer.tar"
printf '{"architecture":"amd64","os":"linux","config":{"Cmd":["sh"],"User":"root"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
  "$(sha "$work/layer.tar")" > "$d/config.json"
printf '[{"Config":"config.json","RepoTags":["seed:latest"],"Layers":["l/layer.tar"]}]' > "$d/manifest.json"
tar --blocking-factor=1 -C "$d" -cf "$work/docker.tar" manifest.json config.json l
o="$work/oci" && mkdir -p "$o/blobs/sha256"
cp "$work/layer.tar.gz" "$o/blobs/sha256/$(sha "$work/layer.tar.gz")"
cp "$d/config.json" "$o/blobs/sha256/$(sha "$d/config.json")"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%d}]}' \
  "$(sha "$d/config.json")" "$(size "$d/config.json")" "$(sha "$work/layer.tar.gz")" "$(size "$work/layer.tar.gz")" > "$work/manifest"
cp "$work/manifest" "$o/blobs/sha256/$(sha "$work/manifest")"
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%d,"annotations":{"org.opencontainers.image.ref.name":"seed"}}]}' \
  "$(sha "$work/manifest")" "$(size "$work/manifest")" > "$o/index.json"
printf '{"imageLayoutVersion":"1.0.0"}' > "$o/oci-layout"
tar --blocking-factor=1 -C "$o" -cf "$work/oci.tar" oci-layout index.json blobs
gzip -9nc "$work/oci.tar" > "$work/oci.tar.gz"
put archive_import docker '\x00' "$work/docker.tar"
put archive_import docker-api '\x10' "$work/docker.tar"
put archive_import oci '\x20' "$work/oci.tar"
put archive_import oci-gz '\x01' "$work/oci.tar.gz"
for sel in 02 03 04 12 24 42 84; do
  put archive_import "built-$sel" "\\x$sel\\x01\\x08$entries\\x01\\x05\\x00\\x07\\x00\\x00\\x00\\x00\\x00"
done

# runtime_config: a real passwd and group, users by name, a structured or a JSON config.
passwd='root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:App:/home/app:/bin/sh\nnobody:x:65534:65534::/nonexistent:/bin/false\n'
group='root:x:0:\naudio:x:29:app\nstaff:x:50:app,root\napp:x:1000:\n'
pw="$(le16 "$(printf "$passwd" | wc -c)")$passwd" gr="$(le16 "$(printf "$group" | wc -c)")$group"
for sel in 02 03 06 46 a2; do
  put runtime_config "named-$sel" "\\x$sel$pw$gr\\x07\\x07\\x00\\x01\\x00\\x7f\\x08PATH=/x\\x02sh\\x03top\\x00\\x04/bin\\x01\\x03k=v\\x00"
done
printf '{"architecture":"amd64","os":"linux","config":{"User":"app","Cmd":["sh"],"Env":["A=1"],"WorkingDir":"/data","Volumes":{"/data":{}}},"rootfs":{"type":"layers","diff_ids":[]}}' > "$work/config.json"
put runtime_config json "\\x00$pw$gr\\x07\\x07\\x02$(le16 "$(size "$work/config.json")")" "$work/config.json"

# docker_config: selector, registry, username, password, then the file.
auth="$(printf 'alice:s3cret' | base64)"
for sel in 0 1 2 3; do
  put docker_config "hub-$sel" "\\x0$sel\\x00\\x03bob\\x02pw" <(printf '{"auths":{"https://index.docker.io/v1/":{"auth":"%s"},"localhost:5000":{"username":"u","password":"p"}},"credsStore":"desktop","HttpHeaders":{"X":"y"}}' "$auth")
  put docker_config "names-$sel" "\\x0$sel\\x00\\x03bob\\x02pw" <(printf '{"auths":{"docker.io":{"auth":"%s"},"registry-1.docker.io":{"auth":"%s"},"https://quay.io":{}}}' "$auth" "$auth")
done

# registry_response: every operation (the first byte modulo 6: fetch by tag, by digest,
# HEAD, pull by tag, by digest, push) under every kind of authentication, with and without
# a few tweaks (see the target for the layout).
for op in 0 1 2 3 4 5; do
  for a in 0 1 2 3; do
    put registry_response "op$op-auth$a" "\\x3$op\\x0$a\\x00\\x08$entries\\x00"
    put registry_response "op$op-auth$a-tweaks" "\\x6$op\\x0$a\\x02\\x08$entries\\x01\\x08$entries\\x02\\x03\\x00\\x05\\x01\\x13\\x00\\x03\\x04\\x02\\x45\\x00\\x03\\x00\\x02\\x00"
  done
done
put registry_response push-chunked "\\x4d\\x02\\x00\\x08$entries\\x00"

cd fuzz
for target in $(cargo fuzz list); do
  # Inputs that once crashed are replayed first: a fixed finding must stay fixed.
  if [ -d "regressions/$target" ]; then
    echo "== replaying regressions/$target"
    cargo fuzz run "$target" "regressions/$target"/* -- -rss_limit_mb=4096
  fi
  echo "== fuzzing $target for ${seconds}s"
  cargo fuzz run "$target" -- -max_total_time="$seconds" -rss_limit_mb=4096
done
