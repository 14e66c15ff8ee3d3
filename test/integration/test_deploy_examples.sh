#!/usr/bin/env bash
# The example configurations (deploy/examples/*.yaml, deploy/kubernetes/config/*.yaml) against
# the real binaries: each passes `run --check-config`; each is what deploy/examples/generate
# writes from today's --print-config-doc (so a key added to a schema fails here until the
# examples are regenerated); each has exactly the doc's keys and every doc line; a broken copy
# is refused with FILE:LINE: key; the downstream example parses but `run` refuses the role.
set -euo pipefail
SRC=${SIGIL_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${SIGIL_BUILD_DIR:-$SRC/build}
SERVER=$BUILD/server/sigil-server
AGENT=$BUILD/agent/sigil-agent
PY=/usr/bin/python3
for b in "$SERVER" "$AGENT"; do [ -x "$b" ] || { echo "not ok - $b is not built"; exit 1; }; done
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail=0
passed=0
failed=0
ok() { echo "ok - $*"; passed=$((passed + 1)); }
notok() { echo "not ok - $*"; fail=1; failed=$((failed + 1)); }

"$SERVER" run --print-config-doc >"$TMP/server.doc"
"$AGENT" run --print-config-doc >"$TMP/agent.doc"

# keys.py DOC EXAMPLE: the dotted keys of both must be the same set, and every "# " doc line
# of DOC must be in EXAMPLE; prints what differs, exit 1 if anything does.
cat >"$TMP/keys.py" <<'EOF'
import re, sys
KEY = re.compile(r"^( *)#?([a-z_][a-z0-9_]*):(?: (.*))?$")
def keys(path):
    out, stack = set(), []
    for line in open(path, encoding="utf-8"):
        line = line.rstrip("\n")
        m = KEY.match(line)
        if not m:
            continue
        stack = stack[: len(m.group(1)) // 2]
        out.add(".".join(stack + [m.group(2)]))
        if not line.lstrip().startswith("#") and not m.group(3):
            stack.append(m.group(2))
    return out
doc, ex = keys(sys.argv[1]), keys(sys.argv[2])
text = open(sys.argv[2], encoding="utf-8").read()
bad = [f"missing key {k}" for k in sorted(doc - ex)] + [f"extra key {k}" for k in sorted(ex - doc)]
for line in open(sys.argv[1], encoding="utf-8"):
    t = line.rstrip("\n")
    if t.lstrip().startswith("# ") and t not in text.splitlines():
        bad.append(f"missing doc line: {t.strip()}")
print("\n".join(bad))
sys.exit(1 if bad else 0)
EOF

shopt -s nullglob
examples=("$SRC"/deploy/examples/*.yaml "$SRC"/deploy/kubernetes/config/*.yaml)
shopt -u nullglob
[ "${#examples[@]}" -ge 6 ] && ok "${#examples[@]} example configurations found" ||
  notok "only ${#examples[@]} example configurations"
for role in server-upstream server-upstream-x509pop server-downstream agent agent-x509pop; do
  [ -f "$SRC/deploy/examples/$role.yaml" ] && ok "deploy/examples/$role.yaml exists" ||
    notok "deploy/examples/$role.yaml is missing"
done

for f in "${examples[@]}"; do
  rel=${f#"$SRC"/}
  case $(basename "$f") in
    agent*) bin=$AGENT prog=agent ;;
    server*) bin=$SERVER prog=server ;;
    *) notok "$rel: name starts with neither server nor agent"; continue ;;
  esac
  if out=$("$bin" run --check-config --config "$f" 2>&1) && [ "$out" = "ok: $f" ]; then
    ok "$rel: sigil-$prog run --check-config says ok"
  else
    notok "$rel: sigil-$prog run --check-config: $out"
  fi
  if out=$($PY "$TMP/keys.py" "$TMP/$prog.doc" "$f"); then
    ok "$rel: the keys and doc lines of sigil-$prog run --print-config-doc, no more, no less"
  else
    notok "$rel: differs from the printed doc: $out"
  fi
done

# deploy/examples/server.yaml (read by unit tests and docs) is the upstream example
[ "$(readlink "$SRC/deploy/examples/server.yaml")" = server-upstream.yaml ] &&
  ok "deploy/examples/server.yaml is a link to server-upstream.yaml" ||
  notok "deploy/examples/server.yaml is not a link to server-upstream.yaml"

# the generator reproduces every example from today's doc and the values files
if out=$("$SRC/deploy/examples/generate" --check --build-dir "$BUILD" 2>&1); then
  ok "deploy/examples/generate --check: every example is up to date"
else
  notok "deploy/examples/generate --check: $out"
fi

# --- the checks can fail
# a key added to the schema but not to an example: the key check names it
{ cat "$TMP/server.doc"; printf '\n# A new section.\nnew_section:\n  # A new key.\n  # a string.\n  #new_key:\n'; } >"$TMP/server-plus.doc"
if out=$($PY "$TMP/keys.py" "$TMP/server-plus.doc" "$SRC/deploy/examples/server-upstream.yaml"); then
  notok "a key added to the doc went unnoticed"
else
  grep -q "missing key new_section.new_key" <<<"$out" && ok "a key added to the doc is reported: ${out%%$'\n'*}" ||
    notok "a key added to the doc: unexpected report: $out"
fi
# an example that lost a key line
grep -v '^  #pool_size:' "$SRC/deploy/examples/server-upstream.yaml" >"$TMP/lost.yaml" || true
grep -v '^  pool_size:' "$TMP/lost.yaml" >"$TMP/lost2.yaml" || true
if out=$($PY "$TMP/keys.py" "$TMP/server.doc" "$TMP/lost2.yaml"); then
  notok "an example without database.pool_size went unnoticed"
else
  grep -q "missing key database.pool_size" <<<"$out" && ok "an example without database.pool_size is reported" ||
    notok "an example without database.pool_size: unexpected report: $out"
fi
# a stale example: the generator's check names it
mkdir -p "$TMP/gen/deploy/examples/values" "$TMP/gen/deploy/kubernetes/config"
cp "$SRC/deploy/examples/generate" "$TMP/gen/deploy/examples/"
cp "$SRC/deploy/examples/values/agent.values" "$TMP/gen/deploy/examples/values/"
sed 's/^server_address: .*/server_address: 192.0.2.99:8081/' "$SRC/deploy/examples/agent.yaml" \
  >"$TMP/gen/deploy/examples/agent.yaml"
if out=$("$TMP/gen/deploy/examples/generate" --check --build-dir "$BUILD" 2>&1); then
  notok "a hand-edited example passed generate --check"
else
  grep -q "deploy/examples/agent.yaml differs" <<<"$out" && ok "a hand-edited example fails generate --check" ||
    notok "generate --check on a hand-edited example: $out"
fi
# a values file naming a key the schema does not have
printf 'trust_domain: example.org\nserver_address: 192.0.2.1:1\ndata_dir: /d\nworkload_api.sockett_path: /x\n' \
  >"$TMP/gen/deploy/examples/values/agent.values"
if out=$("$TMP/gen/deploy/examples/generate" --build-dir "$BUILD" 2>&1); then
  notok "a values file with an unknown key was accepted"
else
  grep -q "workload_api.sockett_path: no such key" <<<"$out" && ok "a values file with an unknown key is refused" ||
    notok "unknown key in a values file: $out"
fi

# a broken copy is refused with FILE:LINE: key and the documented exit code
sed 's/^  pool_size: 8/  pool_size: 99/' "$SRC/deploy/examples/server-upstream.yaml" >"$TMP/bad-server.yaml"
line=$(grep -n '^  pool_size: 99' "$TMP/bad-server.yaml" | cut -d: -f1)
rc=0
out=$("$SERVER" run --check-config --config "$TMP/bad-server.yaml" 2>&1) || rc=$?
if [ "$rc" = 3 ] && grep -q "$TMP/bad-server.yaml:$line: key \"database.pool_size\"" <<<"$out"; then
  ok "server: pool_size 99 refused, exit 3: $out"
else
  notok "server: pool_size 99: exit $rc: $out"
fi
sed 's/^  #jitter_percent: 10/  jitter_percent: 41/' "$SRC/deploy/examples/agent.yaml" >"$TMP/bad-agent.yaml"
line=$(grep -n '^  jitter_percent: 41' "$TMP/bad-agent.yaml" | cut -d: -f1)
rc=0
out=$("$AGENT" run --check-config --config "$TMP/bad-agent.yaml" 2>&1) || rc=$?
if [ "$rc" = 1 ] && grep -q "$TMP/bad-agent.yaml:$line: key \"rotation.jitter_percent\"" <<<"$out"; then
  ok "agent: jitter_percent 41 refused, exit 1: $out"
else
  notok "agent: jitter_percent 41: exit $rc: $out"
fi

# the downstream example parses, but the role is not runnable yet (as its header says)
grep -q "NOT RUNNABLE YET" "$SRC/deploy/examples/server-downstream.yaml" &&
  ok "server-downstream.yaml says it is not runnable yet" ||
  notok "server-downstream.yaml does not say it is not runnable yet"
rc=0
out=$(SIGIL_DATABASE= timeout 20 "$SERVER" run --config "$SRC/deploy/examples/server-downstream.yaml" 2>&1) || rc=$?
if [ "$rc" = 3 ] && grep -q "role downstream is not available yet" <<<"$out"; then
  ok "sigil-server run refuses role downstream (exit 3)"
else
  notok "sigil-server run with role downstream: exit $rc: $out"
fi

echo "deploy examples: $passed passed, $failed failed"
exit "$fail"
