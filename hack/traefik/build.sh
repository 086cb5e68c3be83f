#!/usr/bin/env bash
# Build Traefik from the Go module proxy into a versioned cache outside the repository.
#
# Traefik publishes no Debian, npm or PyPI package, and its module does not build as downloaded
# (../../../shared/design/TRAEFIK.md lists why). This script builds a *copy* of the released module in
# the cache with four adjustments, and never writes Traefik or lego source into the repository:
#   1. recreate the nested module ./pkg/config/dynamic/ext (left out of the module zip): a go.mod and the
#      two empty extension structs HTTP and Router, the only names pkg/config/dynamic uses;
#   2. a one-file placeholder for the dashboard assets (webui/static, built by yarn upstream);
#   3. a copy of lego (the version Traefik pins) whose DNS-01 provider registry answers "unsupported"
#      for every name, so the ~220 DNS-provider SDKs (several refused by the proxy) are not needed;
#      HTTP-01 and TLS-ALPN-01 ACME stay;
#   4. the go-http-auth fork pinned by Traefik is not served; an older commit of the same fork is used
#      (affects only basic/digest auth).
# A no-op (one stat) when the cache holds a matching build. Prints the binary's path on stdout;
# progress goes to stderr.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

version=v3.7.13
http_auth=github.com/containous/go-http-auth@v0.4.1-0.20200324110947-a37a7636d23e
recipe=$(sha256sum "$here/build.sh" | cut -c1-16)
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-modcacherw GO111MODULE=on
# The configured module proxy without the ",direct" fall-back (no VCS fetches); KUBE402_GOPROXY overrides.
proxy=$(go env GOPROXY | sed 's/[,|]direct$//; s/^direct$//')
export GOPROXY=${KUBE402_GOPROXY:-${proxy:-https://proxy.golang.org}}
stamp="$version $(go env GOVERSION) $recipe"

cache=${KUBE402_CACHE:-$HOME/.cache/kube402}
bin="$cache/bin/traefik-$version"
if [ -f "$bin/.stamp" ] && [ "$(cat "$bin/.stamp")" = "$stamp" ]; then echo "$bin/traefik"; exit 0; fi

mkdir -p "$cache/bin" "$cache/src"
exec 9>"$cache/bin/.traefik.lock"
flock 9
if [ -f "$bin/.stamp" ] && [ "$(cat "$bin/.stamp")" = "$stamp" ]; then echo "$bin/traefik"; exit 0; fi

echo "building Traefik $version into $bin; the first build takes several minutes" >&2
start=$(date +%s)
work="$cache/src/traefik-$version"
rm -rf "$work"
mkdir -p "$work"
tmp=$(mktemp -d "$bin.tmp.XXXX")
trap 'rm -rf "$tmp"' EXIT

moddir() {  # module@version → its extracted directory in the module cache
  (cd "$work" && go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
}

src=$(moddir "github.com/traefik/traefik/v3@$version")
[ -d "$src" ] || { echo "build.sh: cannot download Traefik $version" >&2; exit 1; }
cp -r "$src" "$work/traefik"
chmod -R u+w "$work/traefik"
cd "$work/traefik"

# 1. the nested extension module
mkdir -p pkg/config/dynamic/ext
cat > pkg/config/dynamic/ext/go.mod <<'MOD'
module github.com/traefik/traefik/dynamic/ext

go 1.24
MOD
cat > pkg/config/dynamic/ext/ext.go <<'GO'
// Package ext holds the extension points of Traefik's dynamic configuration (empty in this build).
package ext

// HTTP extends dynamic.HTTPConfiguration.
type HTTP struct{}

// Router extends dynamic.Router.
type Router struct{}
GO

# 2. dashboard placeholder
mkdir -p webui/static
echo '<!doctype html><title>Traefik</title><p>Dashboard not built (kube402 build from Go modules).' \
  > webui/static/index.html

# 3. lego without DNS-01 provider SDKs
lego_version=$(sed -n 's/^[[:space:]]*github.com\/go-acme\/lego\/v5 \(v[0-9.]*\).*/\1/p' go.mod | head -1)
[ -n "$lego_version" ] || { echo "build.sh: cannot read the lego version from Traefik's go.mod" >&2; exit 1; }
lego=$(moddir "github.com/go-acme/lego/v5@$lego_version")
cp -r "$lego" "$work/lego"
chmod -R u+w "$work/lego"
rm -f "$work/lego/providers/dns/dns_providers_test.go"
cat > "$work/lego/providers/dns/zz_gen_dns_providers.go" <<'GO'
// Package dns: DNS-01 challenge providers are not part of this build (kube402's Traefik from Go modules).
package dns

import (
	"fmt"

	"github.com/go-acme/lego/v5/challenge"
)

// NewDNSChallengeProviderByName reports every provider as unsupported.
func NewDNSChallengeProviderByName(name string) (challenge.Provider, error) {
	return nil, fmt.Errorf("unrecognized DNS provider: %s (DNS-01 providers are not built in)", name)
}
GO

# 4. module replacements
go mod edit -replace "github.com/go-acme/lego/v5=../lego" -replace "github.com/abbot/go-http-auth=$http_auth"

echo "  go build ./cmd/traefik" >&2
go build -mod=mod -trimpath \
  -ldflags "-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=$version" \
  -o "$tmp/traefik" ./cmd/traefik
chmod 0755 "$tmp"
echo "$stamp" > "$tmp/.stamp"
rm -rf "$bin"
mv -T "$tmp" "$bin"
trap - EXIT
echo "Traefik $version built in $(( $(date +%s) - start )) s" >&2
echo "$bin/traefik"
