#!/usr/bin/env bash
# The generated references are current: docs/api.md is what docs/gen-api-reference makes
# from schema/admin-api.yaml, docs/cli.md what docs/gen-cli-reference makes from the built
# binaries' --help. Each is regenerated into a temporary file and compared; a difference
# fails with the diff and the command that fixes it. Then a check that the API reference
# names every path and method of the contract (so a generator bug cannot pass silently), and
# that README.md links every page of docs/.
set -uo pipefail
SRC=${SIGIL_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${SIGIL_BUILD_DIR:-$SRC/build}
TMP=$(mktemp -d /tmp/sigil-docsgen.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
passed=0
failed=0
ok() { echo "ok - $*"; passed=$((passed + 1)); }
notok() { echo "not ok - $*"; failed=$((failed + 1)); }

same() { # what, generated, committed, how to fix
  if diff -u "$3" "$2" >"$TMP/diff"; then
    ok "$1 is current"
  else
    notok "$1 is stale: run $4"
    head -n 40 "$TMP/diff" | sed 's/^/#   /'
  fi
}

if "$SRC/docs/gen-api-reference" "$TMP/api.md" >/dev/null 2>"$TMP/err"; then
  same docs/api.md "$TMP/api.md" "$SRC/docs/api.md" "docs/gen-api-reference"
else
  notok "docs/gen-api-reference fails: $(tail -n 3 "$TMP/err")"
fi
if "$SRC/docs/gen-cli-reference" "$BUILD" "$TMP/cli.md" >/dev/null 2>"$TMP/err"; then
  same docs/cli.md "$TMP/cli.md" "$SRC/docs/cli.md" "docs/gen-cli-reference (after a build)"
else
  notok "docs/gen-cli-reference fails: $(tail -n 3 "$TMP/err")"
fi

# every path and method of the contract has its section in the reference
/usr/bin/python3 - "$SRC/schema/admin-api.yaml" "$TMP/api.md" >"$TMP/missing" 2>&1 <<'PY'
import sys, yaml
api = yaml.safe_load(open(sys.argv[1]))
doc = open(sys.argv[2]).read()
n = 0
for path, item in api["paths"].items():
    for m in ("get", "put", "post", "patch", "delete"):
        if m in item:
            n += 1
            if f"## {m.upper()} `{path}`" not in doc:
                print(f"missing: {m.upper()} {path}")
for name in api["components"]["schemas"]:
    if f"### {name}\n" not in doc:
        print(f"missing schema: {name}")
print(f"{n} operations")
PY
if [ -s "$TMP/missing" ] && ! grep -q '^missing' "$TMP/missing" && grep -qE '^[1-9][0-9]* operations$' "$TMP/missing"; then
  ok "docs/api.md has a section for each of the contract's $(sed -n 's/ operations$//p' "$TMP/missing") operations and every schema"
else
  notok "docs/api.md lacks parts of the contract"
  sed 's/^/#   /' "$TMP/missing"
fi
# README.md links every page of docs/
missing=
for f in "$SRC"/docs/*.md; do
  name=docs/$(basename "$f")
  grep -qF "\`$name\`" "$SRC/README.md" || missing="$missing $name"
done
if [ -z "$missing" ]; then ok "README.md links every page of docs/"; else notok "README.md does not link:$missing"; fi
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
