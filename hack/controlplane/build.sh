#!/usr/bin/env bash
# Build kube-apiserver, kube-controller-manager, kubectl and etcd from the Go
# modules pinned in go.mod into a versioned cache outside the repository.
# A no-op (one stat) when the cache already holds a matching build.
# Prints the binary directory on stdout; progress goes to stderr.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-modcacherw

k8s=$(sed -n 's/^require k8s.io\/kubernetes \(v[0-9.]*\)$/\1/p; s/^[[:space:]]*k8s.io\/kubernetes \(v[0-9.]*\)$/\1/p' go.mod | head -1)
etcd=$(sed -n 's/^[[:space:]]*go.etcd.io\/etcd\/server\/v3 \(v[0-9.]*\).*/\1/p' go.mod | head -1)
[ -n "$k8s" ] && [ -n "$etcd" ] || { echo "build.sh: cannot read versions from go.mod" >&2; exit 1; }
stamp="$(go env GOVERSION) $(sha256sum go.sum | cut -c1-16)"

cache=${KUBE402_CACHE:-$HOME/.cache/kube402}
bin="$cache/bin/k8s-$k8s-etcd-$etcd"
if [ -f "$bin/.stamp" ] && [ "$(cat "$bin/.stamp")" = "$stamp" ]; then echo "$bin"; exit 0; fi

mkdir -p "$cache/bin"
exec 9>"$cache/bin/.build.lock"
flock 9
if [ -f "$bin/.stamp" ] && [ "$(cat "$bin/.stamp")" = "$stamp" ]; then echo "$bin"; exit 0; fi

echo "building control plane $k8s (etcd $etcd) into $bin; the first build takes several minutes" >&2
start=$(date +%s)
tmp=$(mktemp -d "$bin.tmp.XXXX")
trap 'rm -rf "$tmp"' EXIT
minor=$(echo "$k8s" | cut -d. -f2)
ver=""
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ver="$ver -X $p.gitVersion=$k8s -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
done
go mod download
for c in kube-apiserver kube-controller-manager kubectl; do
  echo "  go build $c" >&2
  go build -trimpath -ldflags "-s -w $ver" -o "$tmp/$c" "k8s.io/kubernetes/cmd/$c"
done
echo "  go build etcd" >&2
go build -trimpath -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3
echo "$stamp" > "$tmp/.stamp"
rm -rf "$bin"
mv -T "$tmp" "$bin"
trap - EXIT
echo "control plane built in $(( $(date +%s) - start )) s" >&2
echo "$bin"
