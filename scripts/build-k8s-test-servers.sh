#!/usr/bin/env bash
# Builds the two servers the Kubernetes tests run against, from Go modules, once:
#   etcd            go.etcd.io/etcd/server/v3@v$ETCD_VERSION
#   kube-apiserver  k8s.io/kubernetes/cmd/kube-apiserver@v$K8S_VERSION
# into $CANARY_K8S_CACHE/<k8s version>-etcd<etcd version>/ (default ~/.cache/canary/k8s/).
# A later run finds both binaries there and builds nothing. The last line printed is that
# directory; tests/k8sserver.py looks in the same place (or at $CANARY_K8S_BIN).
# `--dir` prints that directory and builds nothing.
#
# Why kube-apiserver and not the standalone apiextensions-apiserver: see docs/architecture.md
# ("Kubernetes test servers"). k8s.io/kubernetes is not meant to be a dependency: its go.mod
# points every staging module (k8s.io/api, k8s.io/client-go, ...) at ./staging, so each
# one gets a `replace` to the published v0.<minor>.<patch> of the same release.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-1.37.2}
ETCD_VERSION=${ETCD_VERSION:-3.6.16}
cache_root=${CANARY_K8S_CACHE:-$HOME/.cache/canary/k8s}
out=$cache_root/$K8S_VERSION-etcd$ETCD_VERSION

if [[ ${1:-} == --dir ]]; then
    echo "$out"
    exit 0
fi

command -v go >/dev/null || { echo "build-k8s-test-servers: go not found on PATH" >&2; exit 1; }

if [[ -x $out/etcd && -x $out/kube-apiserver ]]; then
    echo "build-k8s-test-servers: cached (nothing to build)" >&2
    echo "$out"
    exit 0
fi

export GOFLAGS="-trimpath -buildvcs=false"
export CGO_ENABLED=0
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
start=$SECONDS

if [[ ! -x $out/etcd ]]; then
    mkdir "$work/etcd"
    (
        cd "$work/etcd"
        go mod init canary.local/etcd >/dev/null 2>&1
        go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION" >&2
        go build -ldflags="-s -w" -o "$out/etcd.tmp" go.etcd.io/etcd/server/v3
    )
    mv "$out/etcd.tmp" "$out/etcd"
    echo "build-k8s-test-servers: etcd v$ETCD_VERSION built in $((SECONDS - start)) s" >&2
fi

if [[ ! -x $out/kube-apiserver ]]; then
    t0=$SECONDS
    minor=${K8S_VERSION#*.}
    mkdir "$work/apiserver"
    (
        cd "$work/apiserver"
        go mod init canary.local/apiserver >/dev/null 2>&1
        # The staging modules k8s.io/kubernetes replaces with ./staging/src/k8s.io/<name>.
        gomod=$(go list -m -f '{{.GoMod}}' "k8s.io/kubernetes@v$K8S_VERSION")
        staging=$(sed -n 's#^[[:space:]]*\(k8s\.io/[^ ]*\) => ./staging/src/.*#\1#p' "$gomod")
        [[ -n $staging ]] || { echo "no staging replaces in $gomod" >&2; exit 1; }
        for module in $staging; do
            go mod edit -replace "$module=$module@v0.$minor"
        done
        go get "k8s.io/kubernetes/cmd/kube-apiserver@v$K8S_VERSION" >&2
        go build -ldflags="-s -w -X k8s.io/component-base/version.gitVersion=v$K8S_VERSION" \
            -o "$out/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver
    )
    mv "$out/kube-apiserver.tmp" "$out/kube-apiserver"
    echo "build-k8s-test-servers: kube-apiserver v$K8S_VERSION built in $((SECONDS - t0)) s" >&2
fi

echo "build-k8s-test-servers: done in $((SECONDS - start)) s" >&2
echo "$out"
