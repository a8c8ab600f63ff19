#!/usr/bin/env bash
# `make lint-k8s`: render every kustomization and validate what it renders; lint compose.yaml
# and the Dockerfile. Fails on the first broken file. The tools come from `make k8s-tools`
# (.cache/tools, from PyPI, npm and the Go module proxy), never from the network at run time.
set -euo pipefail
cd "$(dirname "$0")/../.."

TOOLS=.cache/tools
BIN=$TOOLS/bin
K8S_VERSIONS=${K8S_VERSIONS:?}
newest=${K8S_VERSIONS##* }
# Every kustomization a user applies.
TARGETS=(overlays/dev overlays/production examples/strimzi examples/mongodb-community)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# A copy of k8s/ where each gitignored input (secrets.env, keda.env, ca/*.crt) is its
# committed *.example: the overlays reference them and kustomize refuses missing files.
cp -r k8s "$work/k8s"
find "$work/k8s" -name '*.example' | while read -r example; do
  cp "$example" "${example%.example}"
done

for target in "${TARGETS[@]}"; do
  out="$work/$(echo "$target" | tr / -).yaml"
  echo "== k8s/$target"
  "$BIN/kustomize" build "$work/k8s/$target" > "$out"

  # Built-in kinds: strict validation (unknown fields refused) against each Kubernetes
  # version's schemas. Custom resources are validated below.
  for version in $K8S_VERSIONS; do
    "$BIN/kubeconform" -strict -summary -kubernetes-version "$version" \
      -schema-location "$TOOLS/k8s-schemas/{{ .NormalizedKubernetesVersion }}/{{ .ResourceKind }}{{ .KindSuffix }}.json" \
      -skip ScaledObject,TriggerAuthentication,PodMonitor,PrometheusRule,KafkaTopic,KafkaUser,MongoDBCommunity \
      "$out"
  done
  node "$TOOLS/node/crs.mjs" "$out"
  "$BIN/crdtypes" "$out"

  # kube-score: every warning and critical finding fails, except these, each explained:
  # - deployment-has-host-podantiaffinity: topologySpreadConstraints on
  #   kubernetes.io/hostname (and topology.kubernetes.io/zone) do that job, without an
  #   anti-affinity rule that would forbid more pods than nodes.
  # - container-image-pull-policy (dev only): a dev cluster runs an image loaded into it
  #   (`kind load docker-image`), which `Always` would try, and fail, to pull.
  ignores=(--ignore-test deployment-has-host-podantiaffinity)
  if [[ $target == overlays/dev ]]; then
    ignores+=(--ignore-test container-image-pull-policy)
  fi
  if grep -q '^kind: Deployment' "$out"; then
    "$BIN/kube-score" score --kubernetes-version "v${newest%.*}" --exit-one-on-warning \
      --enable-optional-test container-seccomp-profile \
      --enable-optional-test container-ports-check \
      "${ignores[@]}" -o ci "$out" | { grep -vE '^\[(OK|SKIPPED)\]' || true; }
    # (grep only hides the passing lines; kube-score's exit status decides.)
  fi
done

echo "== compose.yaml (compose specification)"
"$TOOLS/venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec compose.yaml
echo "== Dockerfile (hadolint) and its dependency lock"
"$TOOLS/venv/bin/hadolint" Dockerfile
"$TOOLS/venv/bin/python" k8s/lint/lockcheck.py
