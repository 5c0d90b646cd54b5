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
# The ReaR sandbox (test/support/rear-sandbox.ts) runs Debian's real ReaR 2.7. Its Depends
# (attr, gawk, iproute2, lsb-release, ...) are all it needs up to the init stage; curl is not
# among them but ReaR's RECOVERY_UPDATE_URL and DRLM code call it. The sandbox itself uses
# mount/overlayfs (mount), getfattr (attr) and pidof (sysvinit-utils, ReaR's own check).
command -v rear >/dev/null || need+=(rear)
command -v curl >/dev/null || need+=(curl)
command -v mount >/dev/null || need+=(mount)
command -v getfattr >/dev/null || need+=(attr)
command -v pidof >/dev/null || need+=(sysvinit-utils)
# `rear mkrescue` OUTPUT=ISO (test/support/mkrescue-sandbox.ts): rear's Depends bring xorriso,
# isolinux and syslinux-common, but cpio (in ReaR's REQUIRED_PROGS, and what packs the initrd) is
# not among them. No kernel package: the sandbox gives KERNEL_FILE a placeholder when there is no
# /boot/vmlinuz-$(uname -r) (linux-image-amd64 would be 70 MB to download for a file never booted).
command -v cpio >/dev/null || need+=(cpio)
command -v xorriso >/dev/null || need+=(xorriso)
# bench/serve.ts (npm run bench): nginx as the reference server, wrk as the load generator
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null || need+=(nginx)
command -v wrk >/dev/null || need+=(wrk)
if [ "${#need[@]}" -gt 0 ]; then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
