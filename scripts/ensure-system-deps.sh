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
# Layers (test/integration/layers-apply.test.ts): real depmod and modprobe, copied with their
# libraries into small chroot roots; chroot itself comes with coreutils.
[ -x /usr/sbin/depmod ] || command -v depmod >/dev/null || need+=(kmod)
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
# not among them.
command -v cpio >/dev/null || need+=(cpio)
command -v xorriso >/dev/null || need+=(xorriso)
# Booting that image (test/support/qemu-vm.ts): QEMU (TCG), and socat, which hands each guest
# connection to the test's server on loopback.
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v mke2fs >/dev/null || need+=(e2fsprogs)  # the local-media disk of the QEMU test (mke2fs -d)
command -v socat >/dev/null || need+=(socat)
# bench/serve.ts (npm run bench): nginx as the reference server, wrk as the load generator
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null || need+=(nginx)
command -v wrk >/dev/null || need+=(wrk)
# Several instances behind a real load balancer (test/integration/multi-instance.test.ts,
# bench/multi.ts): Debian's HAProxy.
command -v haproxy >/dev/null || need+=(haproxy)
# Packages (npm run package, test/package/): dpkg-deb comes with dpkg; rpm brings rpmbuild;
# lintian and rpmlint check what was built.
command -v rpmbuild >/dev/null || need+=(rpm)
command -v lintian >/dev/null || need+=(lintian)
command -v rpmlint >/dev/null || need+=(rpmlint)
# The console's browser tests (test/browser/): Debian's Chromium driven by playwright-core
# (playwright's own browser download is not reachable here), and a font for its screenshots.
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
# The PostgreSQL metadata backend (test/support/postgres.ts): a private PostgreSQL 15 cluster per
# test file, run from Debian's binaries as the postgres system user the package creates.
[ -x /usr/lib/postgresql/15/bin/initdb ] || need+=(postgresql)
if [ "${#need[@]}" -gt 0 ]; then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

# The bootable rescue image's packages, installed only inside the mkrescue sandbox (never on
# this machine): Debian's kernel, and kmod, udev and a DHCP client with exactly the dependencies
# this machine lacks. Downloaded once into a cache that later runs reuse; apt-get answers from
# the cache when it is complete, and the package lists are refreshed only when it is not.
cache=/var/cache/rear-update-test/debs
mkdir -p "$cache/partial"
fetch_debs() {
  apt-get install -y -qq --download-only --no-install-recommends -o Dir::Cache::archives="$cache" kmod udev isc-dhcp-client >/dev/null &&
    { compgen -G "$cache/linux-image-*-amd64_*.deb" >/dev/null ||
      (cd "$cache" && apt-get download -qq -o APT::Sandbox::User=root "$(apt-cache depends linux-image-amd64 | awk '/Depends:/ { print $2; exit }')"); }
}
if ! fetch_debs 2>/dev/null; then
  echo "downloading the rescue image's packages into $cache"
  apt-get update -qq
  fetch_debs
fi
