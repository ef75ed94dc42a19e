#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# deps.sh - install the Debian packages sluice needs to build, test and benchmark (idempotent).
set -euo pipefail

PKGS=(
	build-essential make gcc pkg-config git
	meson ninja-build clang llvm lld libclang-rt-14-dev
	liburing-dev libbpf-dev bpftool dwarves libelf-dev zlib1g-dev libzstd-dev liblzma-dev
	libglib2.0-dev systemtap-sdt-dev
	qemu-system-x86 qemu-utils busybox-static cpio kmod xz-utils zstd
	linux-image-amd64 linux-headers-amd64
	fio python3
)
BPO_SUITE=bookworm-backports
BPO_FILE=/etc/apt/sources.list.d/sluice-bookworm-backports.sources

log() { printf 'deps: %s\n' "$*" >&2; }
fail() { printf 'deps: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || SUDO=sudo
SUDO=${SUDO:-}
export DEBIAN_FRONTEND=noninteractive

updated=0
apt_update() {
	[ "$updated" -eq 1 ] && return 0
	log "apt-get update"
	$SUDO apt-get update -qq || fail "apt-get update failed"
	updated=1
}

missing() {
	local p
	for p in "$@"; do
		dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' || echo "$p"
	done
}

# 1. bookworm-backports (carries the 6.12 kernel)
if ! grep -rqs "$BPO_SUITE" /etc/apt/sources.list /etc/apt/sources.list.d/; then
	log "adding the $BPO_SUITE suite ($BPO_FILE)"
	$SUDO tee "$BPO_FILE" >/dev/null <<EOT
Types: deb
URIs: http://deb.debian.org/debian
Suites: $BPO_SUITE
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOT
	updated=0
fi

# 2. the stable packages
need=$(missing "${PKGS[@]}")
if [ -n "$need" ]; then
	apt_update
	log "installing:" $need
	# shellcheck disable=SC2086
	$SUDO apt-get install -y -qq --no-install-recommends $need >/dev/null ||
		fail "could not install: $need"
fi

# 3. the newest 6.12 kernel + headers from backports, pinned by full name so the 6.1 metapackage stays
have612=$(dpkg-query -W -f='${Package} ${Status}\n' 'linux-image-6.12*-amd64' 2>/dev/null |
	awk '/install ok installed/ && $1 ~ /^linux-image-6\.12\.[0-9]+\+deb12-amd64$/ {print $1}' | sort -V | tail -n1 || true)
if [ -z "$have612" ] || [ -n "$(missing "${have612/linux-image/linux-headers}")" ]; then
	apt_update
	img=$(apt-cache search --names-only '^linux-image-6\.12\.[0-9]+\+deb12-amd64$' | awk '{print $1}' |
		sort -V | tail -n1)
	[ -n "$img" ] || fail "no linux-image-6.12*-amd64 in $BPO_SUITE (is the suite reachable?)"
	hdr=${img/linux-image/linux-headers}
	log "installing $img $hdr from $BPO_SUITE"
	$SUDO apt-get install -y -qq --no-install-recommends -t "$BPO_SUITE" "$img" "$hdr" >/dev/null ||
		fail "could not install $img $hdr from $BPO_SUITE"
fi

# 4. sanity: both kernels have headers
n=0
for d in /lib/modules/*/build; do
	[ -e "$d/Makefile" ] && n=$((n + 1))
done
[ "$n" -ge 2 ] || fail "expected headers for two kernels under /lib/modules/*/build, found $n"
log "all dependencies present"
