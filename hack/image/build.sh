#!/usr/bin/env bash
# `make image`: the kube402 container image as an OCI archive, built without a Docker daemon.
#
#   base   Debian bookworm from Debian's packages (mmdebstrap --variant=essential + python3 3.11 and
#          ca-certificates), cached in ${KUBE402_CACHE:-~/.cache/kube402}/image/
#   app    the kube402 wheel and its dependencies at exactly the versions installed in .venv (the tested
#          set: `pip freeze` as constraints), unpacked into /opt/kube402, byte-compiled at build time
#          (so a read-only root filesystem needs no writable __pycache__)
#   image  buildah (vfs storage, chroot isolation): FROM scratch + that root filesystem, user 1000:1000,
#          entrypoint /usr/local/bin/kube402; pushed as oci-archive
#
# Usage: hack/image/build.sh [OUT.oci.tar]   (default dist/kube402-<version>.oci.tar)
# Prints the archive path on stdout; progress and timings go to stderr.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/pyproject.toml" | head -1)
ref=${KUBE402_IMAGE:-ghcr.io/kube402/kube402:$version}
out=${1:-$root/dist/kube402-$version.oci.tar}
cache=${KUBE402_CACHE:-$HOME/.cache/kube402}/image
storage=(--storage-driver vfs)
for tool in mmdebstrap buildah; do
  command -v "$tool" >/dev/null || { echo "image: $tool is missing (apt-get install mmdebstrap buildah umoci skopeo)" >&2; exit 1; }
done
[ -x "$root/.venv/bin/pip" ] || { echo "image: run 'make venv' first" >&2; exit 1; }

start=$(date +%s)
mkdir -p "$cache" "$(dirname "$out")"
work=$(mktemp -d /tmp/kube402-image.XXXX)
trap 'rm -rf "$work"' EXIT

packages="python3,ca-certificates"
base="$cache/bookworm-$(echo "$packages" | tr ',' '+').tar"
if [ ! -f "$base" ]; then
  echo "image: mmdebstrap bookworm ($packages)" >&2
  mmdebstrap --quiet --variant=essential --include="$packages" \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    bookworm "$base.tmp.tar"   # the .tar suffix selects mmdebstrap's tarball output
  mv "$base.tmp.tar" "$base"
fi
t_base=$(date +%s)

echo "image: wheels (versions pinned to the tested .venv)" >&2
"$root/.venv/bin/pip" freeze --exclude-editable | grep -v '^kube402' > "$work/constraints.txt"
"$root/.venv/bin/pip" wheel --quiet -c "$work/constraints.txt" -w "$work/wheels" "$root"
t_wheels=$(date +%s)

echo "image: root filesystem" >&2
rootfs="$work/rootfs"
mkdir -p "$rootfs"
tar -C "$rootfs" -xf "$base"
"$root/.venv/bin/pip" install --quiet --no-deps --no-compile --no-index --target "$rootfs/opt/kube402" \
  "$work"/wheels/*.whl
rm -rf "$rootfs/opt/kube402/bin"   # console scripts with this host's interpreter path
python3.11 -m compileall -q -j 0 -s "$rootfs" -p / "$rootfs/opt/kube402" >/dev/null || \
  "$root/.venv/bin/python" -m compileall -q -j 0 -s "$rootfs" -p / "$rootfs/opt/kube402" >/dev/null
cat > "$rootfs/usr/local/bin/kube402" <<'PY'
#!/usr/bin/python3
import sys

sys.path.insert(0, "/opt/kube402")
from kube402.cli.main import entry

sys.exit(entry())
PY
chmod 0755 "$rootfs/usr/local/bin/kube402"
echo "kube402:x:1000:1000:kube402:/nonexistent:/usr/sbin/nologin" >> "$rootfs/etc/passwd"
echo "kube402:x:1000:" >> "$rootfs/etc/group"
rm -rf "$rootfs"/var/cache/apt/* "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/* "$rootfs"/tmp/*
chmod 1777 "$rootfs/tmp"
tar -C "$rootfs" --numeric-owner -cf "$work/rootfs.tar" .
t_rootfs=$(date +%s)

cat > "$work/Containerfile" <<EOC
FROM scratch
ADD rootfs.tar /
ENV PYTHONPATH=/opt/kube402 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp
USER 1000:1000
WORKDIR /tmp
ENTRYPOINT ["/usr/local/bin/kube402"]
CMD ["--help"]
LABEL org.opencontainers.image.title=kube402 org.opencontainers.image.version=$version
EOC
echo "image: buildah bud $ref" >&2
buildah "${storage[@]}" rmi -f "$ref" >/dev/null 2>&1 || true
buildah "${storage[@]}" bud --quiet --isolation chroot --layers=false -t "$ref" -f "$work/Containerfile" "$work" >/dev/null
rm -f "$out"
buildah "${storage[@]}" push --quiet "$ref" "oci-archive:$out:$ref" >/dev/null
end=$(date +%s)
size=$(du -m "$out" | cut -f1)
echo "image: $ref → $out (${size} MB archive; base $((t_base - start)) s, wheels $((t_wheels - t_base)) s, rootfs $((t_rootfs - t_wheels)) s, buildah $((end - t_rootfs)) s, total $((end - start)) s)" >&2
echo "$out"
