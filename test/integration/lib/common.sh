# shellcheck shell=bash
# Helpers of the integration tests (sourced): one "ok - " / "not ok - " line per check, then
# "N passed, N failed" from finish; until_ok and free_port come from deploy/local/lib.sh, the
# same code deploy/local/up runs. Sets SRC (the source tree) and BUILD (the build directory)
# from SIGIL_SOURCE_DIR / SIGIL_BUILD_DIR as ctest passes them.
SRC=${SIGIL_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)}
BUILD=${SIGIL_BUILD_DIR:-$SRC/build}
# shellcheck source=../../../deploy/local/lib.sh
. "$SRC/deploy/local/lib.sh"

passed=0
failed=0
ok() { echo "ok - $*"; passed=$((passed + 1)); }
notok() { echo "not ok - $*"; failed=$((failed + 1)); }
# check DESCRIPTION CMD...: ok if CMD succeeds (its output hidden), else not ok and status 1
check() {
  local what=$1
  shift
  if "$@" >/dev/null 2>&1; then ok "$what"; else notok "$what"; return 1; fi
}
# finish: prints the counts and exits 0 only if nothing failed
finish() {
  echo "$passed passed, $failed failed"
  [ "$failed" = 0 ]
  exit $?
}
# until_ok SECS CMD...: CMD every 0.2 s until it succeeds, at most SECS seconds
until_ok() { sigil_until_ok "$@"; }
free_port() { sigil_free_port; }
# need_built BIN...: a "not ok" and exit 1 unless every BIN is built
need_built() {
  local b
  for b in "$@"; do
    [ -x "$b" ] || { echo "not ok - $b is not built"; echo "0 passed, 1 failed"; exit 1; }
  done
}
