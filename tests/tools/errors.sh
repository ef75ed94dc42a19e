#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# errors.sh - bad input to sluice-io / sluice-img: a one-line message on stderr and a non-zero exit, never a crash.
#
#   errors.sh SLUICE_IO SLUICE_IMG SCRATCH_DIR

SLUICE_IO=$(realpath "$1")
SLUICE_IMG=$(realpath "$2")
SCRATCH=$3
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../lib/ktap.sh"

mkdir -p "$SCRATCH"
SCRATCH=$(cd "$SCRATCH" && pwd)
IMG=$SCRATCH/err.img
rm -f "$IMG"
truncate -s 1M "$IMG"

# expect_error NAME CMD...: CMD exits 1..127 and prints exactly one line, prefixed with the tool's
# name, on stderr.
expect_error() {
	local name=$1 err st lines
	shift
	err=$("$@" 2>&1 >/dev/null)
	st=$?
	lines=$(printf '%s' "$err" | grep -c '')
	if [ $st -eq 0 ] || [ $st -ge 128 ]; then
		ktap_diag "exit status $st: $*"
		printf '%s\n' "$err" | sed 's/^/# /'
		ktap_result 1 "$name"
	elif [ "$lines" -ne 1 ] || ! printf '%s' "$err" | grep -q '^sluice-\(io\|img\): '; then
		ktap_diag "stderr is not one 'sluice-...: ' line: $*"
		printf '%s\n' "$err" | sed 's/^/# /'
		ktap_result 1 "$name"
	else
		ktap_diag "$err"
		ktap_result 0 "$name"
	fi
}

io() { "$SLUICE_IO" -f raw "$@"; }

ktap_plan 48

# sluice-io: sizes and ranges
expect_error "io: bad length suffix" io -c 'read 0 12x' "$IMG"
expect_error "io: non-numeric offset" io -c 'write abc 512' "$IMG"
expect_error "io: length above the request limit" io -c 'read 0 3G' "$IMG"
expect_error "io: size overflowing 63 bits" io -c 'read 0 99999999999999999999' "$IMG"
expect_error "io: read past the end" io -c 'read 1M 1' "$IMG"
expect_error "io: read straddling the end" io -c 'read 1020k 8k' "$IMG"
expect_error "io: write past the end" io -c 'write 2M 4k' "$IMG"
expect_error "io: write -z past the end" io -c 'write -z 1M 512' "$IMG"
expect_error "io: readv past the end" io -c 'readv 1M 512 512' "$IMG"
expect_error "io: writev past the end" io -c 'writev 1023k 512 1k' "$IMG"
expect_error "io: discard past the end" io -c 'discard 1M 4k' "$IMG"
expect_error "io: offset near 2^63" io -c 'read 8E 1' "$IMG"
expect_error "io: bad truncate size" io -c 'truncate 1Q' "$IMG"
# sluice-io: flags, patterns, argument counts, commands
expect_error "io: unknown read flag" io -c 'read -X 0 1' "$IMG"
expect_error "io: negative length parsed as a flag" io -c 'read 0 -5' "$IMG"
expect_error "io: pattern out of range" io -c 'read -P 0x100 0 1' "$IMG"
expect_error "io: non-numeric pattern" io -c 'write -P zz 0 1' "$IMG"
expect_error "io: -P with -z" io -c 'write -P 1 -z 0 1' "$IMG"
expect_error "io: a flag after the operands" io -c 'read 0 1 -P' "$IMG"
expect_error "io: too few arguments" io -c 'read 0' "$IMG"
expect_error "io: arguments to flush" io -c 'flush now' "$IMG"
expect_error "io: unknown command" io -c 'frobnicate 0 1' "$IMG"
expect_error "io: write on a read-only image" io -r -c 'write 0 512' "$IMG"
expect_error "io: unknown tool option" io -Z -c 'read 0 1' "$IMG"
expect_error "io: bad cache mode" io -t sometimes -c 'read 0 1' "$IMG"
expect_error "io: bad aio mode" io -i carrier-pigeon -c 'read 0 1' "$IMG"
expect_error "io: unknown format" "$SLUICE_IO" -f vmdk9 -c 'read 0 1' "$IMG"
expect_error "io: no image" io -c 'read 0 1'
# sluice-io: files
expect_error "io: missing file" io -c 'read 0 1' "$SCRATCH/does-not-exist.img"
expect_error "io: a directory" io -c 'read 0 1' "$SCRATCH"
unreadable() {
	local f=$SCRATCH/unreadable.img out st
	local -a as=()
	# Root ignores file modes: run the tool as nobody then.
	[ "$(id -u)" -eq 0 ] && as=(setpriv --reuid=65534 --regid=65534 --clear-groups)
	truncate -s 1M "$f" && chmod 000 "$f"
	out=$("${as[@]}" "$SLUICE_IO" -f raw -c 'read 0 1' "$f" 2>&1 >/dev/null)
	st=$?
	rm -f "$f"
	echo "# $out"
	[ $st -ne 0 ] && [ $st -lt 128 ] && [ "$(echo "$out" | wc -l)" -eq 1 ] &&
		echo "$out" | grep -q 'Permission denied'
}
ktap_run_fn "io: unreadable file (chmod 000)" unreadable

# qemu-io's exit status: a pattern mismatch fails the run, later commands still run.
mismatch() {
	local out st
	out=$(io -c 'write -P 0x11 0 4k' -c 'read -P 0x22 0 4k' -c 'read -P 0x11 0 4k' "$IMG" 2>/dev/null)
	st=$?
	echo "$out" | grep -q '^Pattern verification failed at offset 0, 4096 bytes$' || { echo "# no mismatch line"; return 1; }
	[ "$(echo "$out" | grep -c '^read 4096/4096 bytes at offset 0$')" -eq 2 ] || { echo "# later commands did not run"; return 1; }
	[ $st -eq 1 ] || { echo "# exit status $st"; return 1; }
}
ktap_run_fn "io: pattern mismatch exits 1 and later commands still run" mismatch
failing_then_ok() {
	io -c 'read 2M 1' -c 'read 0 1' "$IMG" 2>/dev/null | grep -q '^read 1/1 bytes at offset 0$' || return 1
	io -c 'read 2M 1' -c 'read 0 1' "$IMG" >/dev/null 2>&1
	[ $? -eq 1 ]
}
ktap_run_fn "io: a failed command makes the exit status 1" failing_then_ok
stdin_cmds() {
	local out
	out=$(printf 'write -P 7 0 512\nread -P 7 0 512\nlength\n' | io "$IMG") || return 1
	echo "$out" | grep -q '^1 MiB$'
}
ktap_run_fn "io: commands from stdin" stdin_cmds

# sluice-img
expect_error "img: no command" "$SLUICE_IMG"
expect_error "img: unknown command" "$SLUICE_IMG" convert a b
expect_error "img: create with a bad size" "$SLUICE_IMG" create -f raw "$SCRATCH/c.img" 12x
expect_error "img: create with a negative size" "$SLUICE_IMG" create -f raw "$SCRATCH/c.img" -1
expect_error "img: create with no size" "$SLUICE_IMG" create -f raw "$SCRATCH/c.img"
expect_error "img: create with an unknown format" "$SLUICE_IMG" create -f qcow9 "$SCRATCH/c.img" 1M
expect_error "img: create in a missing directory" "$SLUICE_IMG" create -f raw "$SCRATCH/no/such/dir.img" 1M
expect_error "img: info on a missing file" "$SLUICE_IMG" info "$SCRATCH/does-not-exist.img"
expect_error "img: info on a directory" "$SLUICE_IMG" info "$SCRATCH"
expect_error "img: info --output=xml" "$SLUICE_IMG" info --output=xml "$IMG"
expect_error "img: bench with a bad count" "$SLUICE_IMG" bench -c many "$IMG"
expect_error "img: bench with depth 0" "$SLUICE_IMG" bench -d 0 "$IMG"
expect_error "img: bench --flush-interval on reads" "$SLUICE_IMG" bench --flush-interval=64 "$IMG"
expect_error "img: bench past the end" "$SLUICE_IMG" bench -c 10 -o 2M "$IMG"

rm -rf "$SCRATCH"
ktap_finish
