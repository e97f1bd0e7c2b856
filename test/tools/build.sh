#!/usr/bin/env bash
# Builds the test tools the end-to-end tests run beside the gateway, once: Jaeger v2 (traces)
# and Prometheus (metrics), each from its Go module pinned in test/tools/<tool>/go.mod and
# go.sum. A binary is cached in ${MCPGW_TOOLS_DIR:-~/.cache/mcpgw-tools}/<tool>-<digest>/,
# where <digest> names the pinned go.mod and go.sum, so it is rebuilt only when a pin changes.
# Go is a test dependency only: the gateway is TypeScript. Prints each binary's path.
#
#   bash test/tools/build.sh            # both
#   bash test/tools/build.sh jaeger     # one
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${MCPGW_TOOLS_DIR:-$HOME/.cache/mcpgw-tools}"

# The package each tool's binary is built from (its version is the module's in go.mod).
declare -A package=(
  [jaeger]=github.com/jaegertracing/jaeger/cmd/jaeger
  [prometheus]=github.com/prometheus/prometheus/cmd/prometheus
)

# Must agree with toolPath in test/helpers/tools.ts.
digest() {
  cat "$here/$1/go.mod" "$here/$1/go.sum" | sha256sum | cut -c1-16
}

build() {
  local tool="$1"
  local dir="$cache/$tool-$(digest "$tool")"
  local binary="$dir/$tool"
  if [[ -x "$binary" ]]; then
    echo "$binary"
    return
  fi
  if ! command -v go >/dev/null; then
    echo "test tools: building $tool needs the Go toolchain (1.26 or newer: https://go.dev/dl/), which is not on PATH" >&2
    exit 1
  fi
  echo "test tools: building $tool (${package[$tool]}, pinned in test/tools/$tool/go.mod); the first build takes a few minutes" >&2
  mkdir -p "$dir"
  local started=$SECONDS
  # The module's own directory: its go.mod pins the version; no VCS stamp (not a repository).
  (cd "$here/$tool" && GOWORK=off GOFLAGS=-buildvcs=false go build -o "$binary.partial" "${package[$tool]}")
  mv "$binary.partial" "$binary"
  echo "test tools: built $tool in $((SECONDS - started)) s: $binary" >&2
  echo "$binary"
}

tools=("$@")
((${#tools[@]})) || tools=(jaeger prometheus)
for tool in "${tools[@]}"; do
  [[ -n "${package[$tool]:-}" ]] || { echo "test tools: unknown tool $tool (jaeger, prometheus)" >&2; exit 64; }
  build "$tool"
done
