#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# check.sh - 'make check': builds (gcc, ASan+UBSan, clang -Wthread-safety), unit tests, the lab suites on every
# installed kernel (6.1 and 6.12 required), the harness self-test; last line "N passed, N failed[, N skipped]".
set -u
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO" || exit 1
B=$REPO/build
C=$B/check
T0=$(date +%s)
rm -rf "$C"
mkdir -p "$C"
JOBS=$(nproc)

say() { printf '\n== %s\n' "$*"; }

# build.ktap: one case per build; a failing build is a failed check, and what depends on it is not run.
nb=0
: >"$C/build.body"
build_case() { # name cmd...
	local name=$1 log
	shift
	nb=$((nb + 1))
	log=$C/build-$nb.log
	if "$@" >"$log" 2>&1; then
		echo "ok $nb $name" >>"$C/build.body"
		return 0
	fi
	tail -n 30 "$log" | sed 's/^/# /' >>"$C/build.body"
	echo "not ok $nb $name" >>"$C/build.body"
	tail -n 30 "$log"
	return 1
}

say "dependencies"
"$REPO/scripts/deps.sh" || { echo "0 passed, 1 failed"; exit 1; }

say "builds"
user_ok=0 asan_ok=0
build_case "build: userspace (gcc -Werror)" make -s -C "$REPO" user && user_ok=1
mapfile -t KVERS < <("$REPO/scripts/kver.sh" --all)
for v in "${KVERS[@]}"; do
	build_case "build: sluice_blk.ko for $v" make -s -C "$REPO" kmod-one KV="$v"
done
build_case "build: userspace with ASan+UBSan" bash -c "
	{ [ -f '$B/asan/build.ninja' ] || meson setup -Db_sanitize=address,undefined -Db_lundef=false \
		--buildtype=debug -Dwerror=true '$B/asan' '$REPO'; } && ninja -C '$B/asan'" && asan_ok=1
build_case "build: userspace with clang -Wthread-safety -Werror" bash -c "
	{ [ -f '$B/clang/build.ninja' ] || CC=clang meson setup --buildtype=debugoptimized -Dwerror=true \
		'$B/clang' '$REPO'; } && ninja -C '$B/clang'"
for want in 6.1 6.12; do
	nb=$((nb + 1))
	if "$REPO/scripts/kver.sh" "$want" >/dev/null 2>&1; then
		echo "ok $nb a $want kernel with headers is installed" >>"$C/build.body"
	else
		echo "not ok $nb a $want kernel with headers is installed" >>"$C/build.body"
	fi
done
{ printf 'TAP version 13\n1..%d\n' "$nb"; cat "$C/build.body"; } >"$C/build.ktap"
cat "$C/build.ktap"

summary=(--ktap "builds=$C/build.ktap")

say "unit tests"
if [ "$user_ok" -eq 1 ]; then
	meson test -C "$B" --num-processes "$JOBS" --print-errorlogs
	summary+=(--meson "unit=$B/meson-logs/testlog.json")
fi
if [ "$asan_ok" -eq 1 ]; then
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		meson test -C "$B/asan" --num-processes "$JOBS" --print-errorlogs
	summary+=(--meson "unit-asan=$B/asan/meson-logs/testlog.json")
fi

# Fuzzers: libFuzzer (clang, ASan+UBSan), each for a bounded time.
say "fuzzers (${FUZZ_SECONDS:=30} s each)"
mkdir -p "$B/fuzz"
nf=0 fuzz_runs=() fuzz_pids=()
: >"$C/fuzz.body"
for src in "$REPO"/tests/fuzz/fuzz_*.c; do
	name=$(basename "$src" .c)
	nf=$((nf + 1))
	# A target names what it needs beyond the walker in comment lines:
	# "// fuzz-sources: FILE...", "// fuzz-pkgs: PKG..." (pkg-config), "// fuzz-cflags: FLAG..." (paths from the repo root),
	# "// fuzz-seed: SCRIPT" (writes seed inputs into the corpus directory given as its argument),
	# "// fuzz-args: ARG..." (more libFuzzer flags).
	fsrcs=() fflags=()
	read -r -a fargs <<<"$(sed -n 's|^// fuzz-args:||p' "$src")"
	for f in $(sed -n 's|^// fuzz-sources:||p' "$src"); do fsrcs+=("$REPO/$f"); done
	for f in $(sed -n 's|^// fuzz-cflags:||p' "$src"); do fflags+=("${f/#-I/-I$REPO/}"); done
	fpkgs=$(sed -n 's|^// fuzz-pkgs:||p' "$src")
	# shellcheck disable=SC2046,SC2086
	if ! clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -D_GNU_SOURCE \
		-I"$REPO/include" -I"$REPO/include/uapi" "${fflags[@]}" "$src" "$REPO/include/sluice/vq_walk.c" \
		"${fsrcs[@]}" $([ -n "$fpkgs" ] && pkg-config --cflags --libs $fpkgs) -lpthread \
		-o "$B/fuzz/$name" >"$C/$name.log" 2>&1; then
		echo "not ok $nf $name # does not build" >"$C/$name.res"
		fuzz_runs+=("$name")
		continue
	fi
	mkdir -p "$B/fuzz/$name.corpus"
	# "// fuzz-seed: SCRIPT" (from the repo root) fills the corpus with seed inputs first.
	for f in $(sed -n 's|^// fuzz-seed:||p' "$src"); do bash "$REPO/$f" "$B/fuzz/$name.corpus" >>"$C/$name.log" 2>&1; done
	# rss_limit 4 GiB: the qcow2 target peaks at 1-2 GiB, and that is ASan's quarantine of freed blocks
	# (with ASAN_OPTIONS=quarantine_size_mb=0 the same corpus peaks at 66 MiB); no single allocation exceeds
	# the target's -malloc_limit_mb.  2 GiB, libFuzzer's default, leaves little room.
	# The targets run side by side (one core each); each writes its result lines to $C/$name.res.
	(
		if "$B/fuzz/$name" -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=4096 -print_final_stats=1 \
			"${fargs[@]}" "$B/fuzz/$name.corpus" >>"$C/$name.log" 2>&1; then
			echo "ok $nf $name ($(grep -o 'stat::number_of_executed_units: *[0-9]*' "$C/$name.log" |
				grep -o '[0-9]*$') inputs)" >"$C/$name.res"
		else
			{ tail -n 40 "$C/$name.log" | sed 's/^/# /'
			  echo "not ok $nf $name # crashed: see $C/$name.log"; } >"$C/$name.res"
		fi
	) &
	fuzz_pids+=($!)
	fuzz_runs+=("$name")
done
[ ${#fuzz_pids[@]} -eq 0 ] || wait "${fuzz_pids[@]}"
for name in "${fuzz_runs[@]}"; do cat "$C/$name.res" >>"$C/fuzz.body"; done
{ printf 'TAP version 13\n1..%d\n' "$nf"; cat "$C/fuzz.body"; } | tee "$C/fuzz.ktap"
summary+=(--ktap "fuzz=$C/fuzz.ktap")

# The lab suites, once per kernel, one kernel after the other.  (Side by side was no faster: each
# lab keeps both cores busy with its TCG vCPUs, and two at once made every guest 2-4x slower and
# timing-sensitive.)  A lab that did not boot or run is a failure.
say "lab suites on ${KVERS[*]} (one after the other; consoles in $C/lab-<kver>.log)"
for v in "${KVERS[@]}"; do
	if [ ! -f "$B/kmod/$v/sluice_blk.ko" ]; then
		summary+=(--lab "lab-$v=/nonexistent/module-not-built")
		continue
	fi
	rm -rf "$B/lab/$v/check/ktap" "$B/lab/$v/kept"
	mkdir -p "$B/lab/$v/kept"
	rest=""
	for try in 1 2 3; do
		t0=$(date +%s)
		"$REPO/tests/lab/lab.sh" --kver "$v" --timeout "${LAB_CHECK_TIMEOUT:-1500}" --out "$B/lab/$v/check" \
			-- "tests/lab/run_suites.sh $rest" >"$C/lab-$v.log" 2>&1
		st=$?
		say "lab suites on $v: status $st ($(($(date +%s) - t0)) s)"
		# One known flaw of the TCG lab itself, seen on 6.12 only, in any VMM's thread (QEMU's too,
		# with the module unused): the L1 kernel dies inside its scheduler, either panicking with
		# "corrupted stack end detected inside scheduler" or oopsing with its RIP in __schedule (a
		# stale int3 or a jump into the middle of an instruction).  Documentation/testing.rst; the run
		# is repeated, at most twice, loudly, with each such console kept, for the suites that had not
		# finished (run_suites.sh leaves SUITE.done beside each finished suite's KTAP).  Any other lab
		# failure, an oops anywhere else, or a third such death, fails.
		# Or an interrupt taken inside the VMRUN window (global interrupt flag clear), RIP in
		# __svm_vcpu_run, before KVM restored the host's GS base (testing.rst has that one too).
		flaw='corrupted stack end detected inside scheduler|RIP: 0010:__schedule\+[^ ]*|Oops: int3|RIP: 0010:__svm_vcpu_run\+[^ ]*'
		if [ "$try" -lt 3 ] && [ "$st" -eq 125 ] && grep -q -E "$flaw" "$C/lab-$v.log"; then
			mv "$C/lab-$v.log" "$C/lab-$v.panic$try.log"
			# lab.sh empties its results directory: keep the finished suites' KTAP aside.
			rest=$(grep -v '^#' "$REPO/tests/lab/SUITES" | while read -r s; do
				if [ -f "$B/lab/$v/check/ktap/$s.done" ]; then
					cp "$B/lab/$v/check/ktap/$s.ktap" "$B/lab/$v/kept/"
				elif [ ! -f "$B/lab/$v/kept/$s.ktap" ]; then
					printf '%s ' "$s"
				fi
			done)
			say "lab on $v: the L1 lab kernel died in its scheduler ($(grep -m1 -o -E "$flaw" "$C/lab-$v.panic$try.log")," \
				"$C/lab-$v.panic$try.log); running it again for: ${rest:-nothing left?}"
			[ -n "$rest" ] || break
			continue
		fi
		break
	done
	mkdir -p "$B/lab/$v/check/ktap"
	for f in "$B/lab/$v/kept/"*.ktap; do
		[ -f "$f" ] && [ ! -f "$B/lab/$v/check/ktap/$(basename "$f")" ] && cp "$f" "$B/lab/$v/check/ktap/"
	done
	# Results and timings; a failed case also shows what it printed (its last 25 lines), so a CI log
	# that holds only this output still says why.
	awk '/^  (not )?ok / { if ($1 == "not") for (i = 0; i < n; i++) print "  # | " buf[i]; n = 0 }
	     /^(== lab suite|ok|not ok|  (not )?ok)|^# [^ ]+: [0-9]+ s$|lab: error/ { print; n = 0; next }
	     { if (n == 25) { for (i = 1; i < n; i++) buf[i - 1] = buf[i]; n-- } buf[n++] = $0 }' "$C/lab-$v.log"
	found=0
	for f in "$B/lab/$v/check/ktap/"*.ktap; do
		[ -f "$f" ] || continue
		s=$(basename "$f" .ktap)
		cp "$f" "$C/lab-$v-$s.ktap"
		summary+=(--lab "lab $v $s=$C/lab-$v-$s.ktap")
		found=1
	done
	if [ "$st" -eq 125 ] || [ "$found" -eq 0 ]; then
		tail -n 30 "$C/lab-$v.log"
		printf 'TAP version 13\n1..1\nnot ok 1 the lab ran the suites on %s (status %d)\n' "$v" "$st" \
			>"$C/lab-$v-boot.ktap"
		summary+=(--lab "lab $v boot=$C/lab-$v-boot.ktap")
	fi
done

# The harness must catch a broken module: a sluice_blk.ko whose init fails makes the kmod suite fail.
say "harness self-test: a module whose init fails"
v=${KVERS[-1]}
bk=$B/kmod-broken/$v
mkdir -p "$bk"
ln -sf "$REPO"/tests/kmod/broken_init/* "$bk/"
hs="ok 1 a module whose init fails makes the kmod suite fail"
if ! make -s -C "/lib/modules/$v/build" M="$bk" modules >"$C/broken-build.log" 2>&1; then
	hs="not ok 1 a module whose init fails makes the kmod suite fail # could not build it"
else
	"$REPO/tests/lab/lab.sh" --kver "$v" --kmod "$bk/sluice_blk.ko" -- 'make -s -C tests/kmod run_tests' \
		>"$C/broken-lab.log" 2>&1
	st=$?
	if [ "$st" -eq 0 ]; then
		hs="not ok 1 a module whose init fails makes the kmod suite fail # the suite passed"
	elif [ "$st" -eq 125 ] || ! grep -q '^not ok' "$C/broken-lab.log"; then
		hs="not ok 1 a module whose init fails makes the kmod suite fail # lab status $st"
	fi
fi
printf 'TAP version 13\n1..1\n%s\n' "$hs" | tee "$C/harness.ktap"
summary+=(--ktap "harness=$C/harness.ktap")

say "summary ($(($(date +%s) - T0)) s)"
python3 "$REPO/tests/lib/ktap_summary.py" "${summary[@]}"
