#!/usr/bin/env bash
# Debian packages `make test` needs beyond Python, Go, npm, make and gcc; installs only
# what is missing (CI runs it from .ci/run on a fresh machine).
# - promtool (package prometheus; nothing is started without systemd): the chart's alert
#   rules, tests/unit/chart/test_monitoring.py;
# - buildah, podman, mmdebstrap, crun: the image built and run, tests/e2e/test_image.py.
set -euo pipefail
missing=()
command -v promtool >/dev/null || missing+=(prometheus)
for tool in buildah podman mmdebstrap crun; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
  sudo=$([[ $(id -u) == 0 ]] || echo sudo)
  echo "==> installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi
