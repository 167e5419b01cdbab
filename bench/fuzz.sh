#!/bin/sh
# bench/fuzz.sh [SECONDS] [PATTERN]: run every Go native fuzz target of the
# module (found by grepping "func FuzzX(" in *_test.go, third_party
# excluded) for SECONDS each (default 60), one after the other, under nice,
# with one fuzzing worker so that it shares a small machine. PATTERN limits
# the run to targets whose "pkg.Name" matches (grep -E). New crashers land
# in the package's testdata/fuzz/FuzzX/ directory; commit them, they then
# run in every go test as regression seeds. Exit status 1 if any target
# failed; a summary line per target is printed at the end.
set -u
secs=${1:-60}
pat=${2:-.}
cd "$(dirname "$0")/.." || exit 2
export GOFLAGS=${GOFLAGS:--buildvcs=false}
summary=$(mktemp)
trap 'rm -f "$summary"' EXIT
rc=0
grep -rl --include='*_test.go' '^func Fuzz' . | grep -v '^./third_party/' | sort | while read -r f; do
	pkg=./$(dirname "${f#./}")
	grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | sed 's/^func //' | while read -r name; do
		echo "$pkg.$name"
	done
done | sort -u | grep -E -- "$pat" | while read -r t; do
	pkg=${t%.*}
	name=${t##*.}
	echo "=== $pkg $name (${secs}s)"
	start=$(date +%s)
	if nice go test -run '^$' -fuzz "^${name}\$" -fuzztime "${secs}s" -parallel 1 "$pkg" >"/tmp/fuzz.$$.out" 2>&1; then
		res=ok
	else
		res=FAIL
	fi
	execs=$(grep -o 'execs: [0-9]*' "/tmp/fuzz.$$.out" | tail -1 | cut -d' ' -f2)
	tail -3 "/tmp/fuzz.$$.out"
	printf '%-28s %-36s %-4s %5ss execs=%s\n' "$pkg" "$name" "$res" "$(( $(date +%s) - start ))" "${execs:-?}" >>"$summary"
	[ $res = ok ] || cp "/tmp/fuzz.$$.out" "/tmp/fuzz-fail-${name}.out"
	rm -f "/tmp/fuzz.$$.out"
done
echo "=== summary"
cat "$summary"
grep -q ' FAIL ' "$summary" && rc=1
exit $rc
