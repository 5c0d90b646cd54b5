#!/usr/bin/env bash
# Debian packages the test suites use; installed only when missing, so a developer machine
# that has them is not touched. Needs root (CI and the dev machines run as root).
set -euo pipefail
need=()
command -v tar >/dev/null || need+=(tar)
command -v gzip >/dev/null || need+=(gzip)
command -v xz >/dev/null || need+=(xz-utils)
command -v openssl >/dev/null || need+=(openssl)
command -v mkfifo >/dev/null || need+=(coreutils)
command -v unshare >/dev/null || need+=(util-linux)
if [ "${#need[@]}" -gt 0 ]; then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
