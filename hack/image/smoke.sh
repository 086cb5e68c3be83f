#!/usr/bin/env bash
# Run the image built by build.sh: `kube402 --version`, then `kube402 verifier` answering /healthz.
# buildah run (chroot isolation, host network): podman's OCI runtimes cannot set rlimits/cgroups in these
# sandboxes. Runs as the image's user (1000:1000). Usage: hack/image/smoke.sh ARCHIVE.oci.tar
set -euo pipefail
archive=$1
storage=(--storage-driver vfs)
ctr=$(buildah "${storage[@]}" from --quiet "oci-archive:$archive")
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  buildah "${storage[@]}" rm "$ctr" >/dev/null || true
}
trap cleanup EXIT
user=""
for _ in 1 2 3; do  # a first `buildah run` right after `from` has been seen to print nothing once
  user=$(buildah "${storage[@]}" run --isolation chroot "$ctr" -- id -u)
  [ -n "$user" ] && break
done
[ "$user" = 1000 ] || { echo "smoke: runs as uid '$user', not 1000" >&2; exit 1; }
echo "smoke: runs as uid $user" >&2
version=$(buildah "${storage[@]}" run --isolation chroot "$ctr" -- kube402 --version)
echo "smoke: kube402 --version → $version" >&2
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
buildah "${storage[@]}" run --isolation chroot --network host "$ctr" -- \
  kube402 verifier --listen "127.0.0.1:$port" --proxy-listen "" --config /nonexistent/pricing.yaml \
  > /tmp/kube402-image-verifier.log 2>&1 &
pid=$!
for _ in $(seq 150); do
  if body=$(curl -fsS "http://127.0.0.1:$port/healthz" 2>/dev/null); then
    echo "smoke: kube402 verifier /healthz → $body" >&2
    exit 0
  fi
  kill -0 "$pid" 2>/dev/null || { cat /tmp/kube402-image-verifier.log >&2; exit 1; }
  sleep 0.2
done
echo "smoke: verifier did not answer /healthz" >&2
cat /tmp/kube402-image-verifier.log >&2
exit 1
