#!/usr/bin/env bash
# Lints and renders the Helm chart (docker/helm/careway) with each set of CI values (careway/ci/*-values.yaml),
# then checks the rendered objects (check-rendered.mjs). Run from anywhere; CI runs it from .ci/run.
#
# helm has no Debian package, so it is built from its Go module at a pinned version and cached under
# .careway/helm-<version>/ (GOPROXY and GOFLAGS as the environment sets them).
set -euo pipefail

HELM_VERSION="v3.19.0"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CHART="$ROOT/docker/helm/careway"
BIN_DIR="$ROOT/.careway/helm-$HELM_VERSION"
HELM="$BIN_DIR/helm"
OUT="$ROOT/.careway/helm-rendered"

if [[ ! -x "$HELM" ]]; then
	command -v go >/dev/null || {
		echo "check.sh: Go is needed to build helm $HELM_VERSION" >&2
		exit 1
	}
	echo "check.sh: building helm $HELM_VERSION (go install)..." >&2
	mkdir -p "$BIN_DIR"
	GOBIN="$BIN_DIR" go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
fi
"$HELM" version --short

rm -rf "$OUT"
mkdir -p "$OUT"
for values in "$CHART"/ci/*-values.yaml; do
	name="$(basename "$values" -values.yaml)"
	echo "==> helm lint --strict ($name)"
	"$HELM" lint --strict "$CHART" -f "$values"
	echo "==> helm template ($name)"
	"$HELM" template careway "$CHART" -f "$values" --namespace careway >"$OUT/$name.yaml"
done

# The chart refuses a pod grace period that would cut the drain short.
if "$HELM" template careway "$CHART" -f "$CHART/ci/external-fhir-values.yaml" \
	--set terminationGracePeriodSeconds=20 >/dev/null 2>"$OUT/refused.txt"; then
	echo "check.sh: a terminationGracePeriodSeconds below SHUTDOWN_TIMEOUT_MS was rendered" >&2
	exit 1
fi
grep -q "must exceed SHUTDOWN_TIMEOUT_MS" "$OUT/refused.txt"

node "$ROOT/docker/helm/check-rendered.mjs" "$OUT"/*.yaml
