#!/usr/bin/env bash
# Builds the libFuzzer harnesses of native/fuzz/ into build/fuzz/ and runs each for SECONDS (default 60).
#
#   bash native/fuzz/run.sh [SECONDS]          (npm run fuzz; FUZZ_SECONDS=N npm run fuzz)
#   FUZZ_HARNESSES="frames cmsg" bash native/fuzz/run.sh 5      (some of them)
#
# Each harness starts from a scratch copy of its seed corpus, test/corpus/<harness>/ (so the checked-in
# corpus stays small; libFuzzer first replays every seed, which makes the regression files there
# tests of their own), and prints: executions, executions per second, coverage, and crashes (0 or
# the crash file under build/fuzz/crashes/). Exits non-zero if any harness crashed.
set -euo pipefail

seconds="${1:-${FUZZ_SECONDS:-60}}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
src="$root/native/fuzz"
out="$root/build/fuzz"
harnesses=(${FUZZ_HARNESSES:-frames checksum cmsg plan udp_frame})

if ! command -v clang >/dev/null || ! command -v clang++ >/dev/null; then
	echo "native/fuzz/run.sh: clang is not installed; install it with: apt-get install clang libclang-rt-14-dev" >&2
	exit 2
fi

mkdir -p "$out/crashes"
sanitize=(-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
# Debian's clang package leaves libFuzzer and the sanitizer runtimes to libclang-rt-N-dev.
if ! echo 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }' |
	clang++ "${sanitize[@]}" -x c++ -o "$out/.probe" - 2>/dev/null; then
	version=$(clang --version | sed -n 's/.*version \([0-9]*\).*/\1/p' | head -1)
	echo "native/fuzz/run.sh: clang cannot link libFuzzer and the sanitizers; install them with: apt-get install libclang-rt-${version}-dev" >&2
	exit 2
fi

build() {
	case "$1" in
	frames) clang++ "${sanitize[@]}" -std=c++17 -o "$out/frames" "$src/frames_fuzzer.cc" "$root/native/addon/frame_meta.cc" ;;
	checksum) clang++ "${sanitize[@]}" -std=c++17 -o "$out/checksum" "$src/checksum_fuzzer.cc" "$root/native/addon/checksum.cc" ;;
	udp_frame) clang++ "${sanitize[@]}" -std=c++17 -o "$out/udp_frame" "$src/udp_frame_fuzzer.cc" "$root/native/addon/udp_frame.cc" "$root/native/addon/checksum.cc" ;;
	cmsg) clang++ "${sanitize[@]}" -std=c++17 -o "$out/cmsg" "$src/cmsg_fuzzer.cc" "$root/native/addon/cmsg.cc" ;;
	plan)
		# plan.c alone, its realpath() renamed so the harness can free what it returns (plan_fuzzer.c).
		clang "${sanitize[@]}" -std=gnu11 -D_GNU_SOURCE -Drealpath=fuzz_realpath -c -o "$out/plan.o" "$root/native/launcher/plan.c"
		# plan_parse() also names capabilities and seccomp rules: link the tables it looks them up in.
		for dep in capabilities seccomp syscall_table; do
			clang "${sanitize[@]}" -std=gnu11 -D_GNU_SOURCE -c -o "$out/$dep.o" "$root/native/launcher/$dep.c"
		done
		clang "${sanitize[@]}" -std=gnu11 -D_GNU_SOURCE -o "$out/plan" "$src/plan_fuzzer.c" "$src/report_stub.c" "$out/plan.o" \
			"$out/capabilities.o" "$out/seccomp.o" "$out/syscall_table.o"
		;;
	esac
}

failed=0
printf '%-10s %12s %10s %8s %8s  %s\n' harness executions exec/s cov features crashes
for h in "${harnesses[@]}"; do
	build "$h"
	corpus="$out/corpus/$h"
	rm -rf "$corpus"
	mkdir -p "$corpus"
	if [ -d "$root/test/corpus/$h" ]; then cp -r "$root/test/corpus/$h/." "$corpus/"; fi
	dict=()
	if [ -f "$src/$h.dict" ]; then dict=(-dict="$src/$h.dict"); fi
	log="$out/$h.log"
	status=0
	ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1}" "$out/$h" "${dict[@]}" -max_total_time="$seconds" -timeout=10 \
		-rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$out/crashes/$h-" "$corpus" >"$log" 2>&1 || status=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
	cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
	ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
	crash=0
	if [ "$status" -ne 0 ]; then
		failed=1
		crash=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
		crash="${crash:-exit status $status, see $log}"
	fi
	printf '%-10s %12s %10s %8s %8s  %s\n' "$h" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "$crash"
	if [ "$status" -ne 0 ]; then grep -m 20 -E 'ERROR|SUMMARY|frame_meta:|checksum:|plan:|runtime error' "$log" >&2 || true; fi
done
exit "$failed"
