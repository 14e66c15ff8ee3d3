#!/usr/bin/env bash
# Every command shown in README.md and docs/*.md runs as written.
#
# The convention: a fenced block tagged `sh` holds commands and is run; a line
# `<!-- norun: REASON -->` right before it skips it (reported as `ok - # SKIP`); blocks tagged
# console, text, yaml, json, ini, ... (or untagged) are not commands. A `sh` block with no
# command in it, and any block tagged `bash` or `shell`, fail: the tag decides what runs.
#
# Where they run: a clean clone of SIGIL_SOURCE_DIR's HEAD (committed files only) whose
# `build/` is a symlink to SIGIL_BUILD_DIR, so the suite's build is reused and nothing is
# rebuilt (SIGIL_BUILD_DIR stays exported for deploy/local/up too, with SIGIL_SKIP_DEPS=1). The local stack is the
# clone's own: SIGIL_LOCAL_DIR=<clone>/.local, so a doc's `deploy/local/up` or `. .local/env`
# means exactly what it says. Before each file, `deploy/local/up` runs unless the stack
# answers (a doc may end with `deploy/local/down`), and its env file is sourced and exported;
# at the end (always) `deploy/local/down` stops it.
#
# Each file's blocks run in order, each in its own `bash` with `set -e`, stdin /dev/null and
# a timeout (SIGIL_DOCS_TIMEOUT seconds, default 180); what a block leaves behind (variables,
# functions, the working directory) carries over to the next block of the same file, as if
# one shell read the page. One `ok`/`not ok` line per block with file:line, then
# "N passed, N failed". SIGIL_DOCS_FILES="README.md docs/x.md" limits the run to those files;
# SIGIL_DOCS_VERBOSE=1 shows every block's output (a failed block's last lines always show).
set -uo pipefail
SRC=${SIGIL_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${SIGIL_BUILD_DIR:-$SRC/build}
BUILD=$(cd "$BUILD" && pwd) || { echo "not ok - no build directory"; echo "0 passed, 1 failed"; exit 1; }
BLOCK_TIMEOUT=${SIGIL_DOCS_TIMEOUT:-180}

passed=0
failed=0
ok() { echo "ok - $*"; passed=$((passed + 1)); }
notok() { echo "not ok - $*"; failed=$((failed + 1)); }
finish() {
  echo "$passed passed, $failed failed"
  [ "$failed" = 0 ]
  exit $?
}

for b in server/sigil-server agent/sigil-agent; do
  [ -x "$BUILD/$b" ] || { notok "$BUILD/$b is not built"; finish; }
done

TMP=$(mktemp -d /tmp/sigil-docs.XXXXXX)
chmod 0755 "$TMP" # deploy/local/pg runs PostgreSQL as the postgres user when we are root
REPO=$TMP/repo
cleanup() {
  if [ -x "$REPO/deploy/local/down" ]; then
    (cd "$REPO" && deploy/local/down) >"$TMP/down.log" 2>&1 || { echo "# deploy/local/down failed:"; sed 's/^/#   /' "$TMP/down.log"; }
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT

git clone -q "$SRC" "$REPO" || { notok "git clone $SRC"; finish; }
rm -rf "$REPO/build"
ln -s "$BUILD" "$REPO/build"
export SIGIL_BUILD_DIR=$BUILD
export SIGIL_LOCAL_DIR=$REPO/.local
export SIGIL_SKIP_DEPS=1 # test/run installed them; deploy/install-deps is not what this test checks
unset SIGIL_SOURCE_DIR # a reader has none: the blocks see the clone only
cd "$REPO" || exit 1

# --- extraction: one line per fenced block in $TMP/blocks.tsv (file, line, tag, norun reason)
# and the block's text in $TMP/b/<n>
mkdir -p "$TMP/b"
files=${SIGIL_DOCS_FILES:-"README.md $(cd "$REPO" && ls docs/*.md 2>/dev/null | sort | tr '\n' ' ')"}
: >"$TMP/blocks.tsv"
n=0
for f in $files; do
  [ -f "$f" ] || { notok "$f: no such file in the clone (not committed?)"; continue; }
  awk -v file="$f" -v dir="$TMP/b" -v start="$n" '
    # a body line without the indentation of its fence (a block inside a list item)
    function body(   l, k) {
      l = $0
      for (k = 0; k < ind && substr(l, 1, 1) ~ /[ \t]/; k++) l = substr(l, 2)
      return l
    }
    BEGIN { n = start; open = 0 }
    {
      if (!open && $0 ~ /^[ \t]*```/) { # any indentation: a block in a list item runs too
        fence = $0; match(fence, /^[ \t]*/); ind = RLENGTH
        sub(/^[ \t]*/, "", fence); match(fence, /^`+/); flen = RLENGTH
        tag = substr(fence, flen + 1); sub(/[ \t].*$/, "", tag)
        reason = ""
        if (prev ~ /^[ \t]*<!-- *norun: *.*-->[ \t]*$/) {
          reason = prev; sub(/^[ \t]*<!-- *norun: */, "", reason); sub(/ *-->[ \t]*$/, "", reason)
          if (reason == "") reason = "(no reason given)"
        }
        n++; open = 1; out = dir "/" n; printf "" >out
        printf "%s\t%d\t%s\t%s\n", file, NR, tag, reason
      } else if (open && $0 ~ /^[ \t]*`+[ \t]*$/) {
        close_f = $0; gsub(/[ \t]/, "", close_f)
        if (length(close_f) >= flen) { open = 0; close(out) } else print body() >>out
      } else if (open) {
        print body() >>out
      }
      prev = $0
    }
    END { if (open) printf "%s\t%d\tUNCLOSED\t\n", file, NR }
  ' "$f" >>"$TMP/blocks.tsv"
  n=$(wc -l <"$TMP/blocks.tsv")
done

# --- the stack
stack_answers() {
  build/server/sigil-server healthcheck >/dev/null 2>&1 && build/agent/sigil-agent healthcheck >/dev/null 2>&1
}
ensure_stack() { # runs deploy/local/up unless the stack answers; sources and exports its env
  if [ -f "$SIGIL_LOCAL_DIR/env" ]; then set -a; . "$SIGIL_LOCAL_DIR/env"; set +a; fi
  if ! [ -f "$SIGIL_LOCAL_DIR/env" ] || ! stack_answers; then
    if ! deploy/local/up >"$TMP/up.log" 2>&1; then
      echo "# deploy/local/up failed:"; tail -n 30 "$TMP/up.log" | sed 's/^/#   /'
      return 1
    fi
    [ -f "$SIGIL_LOCAL_DIR/env" ] || { echo "# deploy/local/up wrote no $SIGIL_LOCAL_DIR/env"; return 1; }
    set -a; . "$SIGIL_LOCAL_DIR/env"; set +a
  fi
}
# Saves what a block leaves for the next one: variables (not bash's own or read-only ones),
# functions and the working directory. Written into every block's script.
cat >"$TMP/save.sh" <<'EOF'
__docs_save() {
  local __v __d
  for __v in $(compgen -v); do
    case $__v in
      BASH* | EUID | PPID | UID | SHELLOPTS | FUNCNAME | GROUPS | LINENO | RANDOM | SECONDS | \
        SRANDOM | EPOCH* | HISTCMD | PIPESTATUS | DIRSTACK | COLUMNS | LINES | _ | PWD | OLDPWD | \
        SHLVL | IFS | OPTIND | OPTARG | OPTERR | COMP_* | __*) continue ;;
    esac
    __d=$(declare -p "$__v" 2>/dev/null) || continue
    case ${__d%%=*} in "declare -"*r*) continue ;; esac
    printf '%s\n' "$__d"
  done
  declare -f | sed -n '/^__docs_save ()/,/^}/!p'
  printf 'cd %q\n' "$PWD"
}
EOF

run_block() { # file, line, body file, state file -> 0 ok
  local file=$1 line=$2 body=$3 state=$4 script=$TMP/run.sh rc
  {
    echo ". $(printf %q "$state")"
    cat "$TMP/save.sh"
    echo "trap '[ \$? = 0 ] && __docs_save >$(printf %q "$state.next")' EXIT"
    echo "set -e"
    cat "$body"
  } >"$script"
  rm -f "$state.next"
  (cd "$REPO" && exec timeout -k 5 "$BLOCK_TIMEOUT" bash "$script") </dev/null >"$TMP/out" 2>&1
  rc=$?
  if [ "$rc" = 0 ]; then
    [ -f "$state.next" ] && mv "$state.next" "$state"
    [ "${SIGIL_DOCS_VERBOSE:-0}" = 1 ] && sed 's/^/#   /' "$TMP/out"
    return 0
  fi
  [ "$rc" = 124 ] && echo "# timed out after ${BLOCK_TIMEOUT}s"
  echo "# exit $rc; last lines of its output:"
  tail -n 25 "$TMP/out" | sed 's/^/#   /'
  return 1
}

has_command() { # a line that is neither blank nor a comment
  grep -qvE '^[[:space:]]*(#.*)?$' "$1"
}

# --- run
cur=
stack=no
state=$TMP/state
i=0
while IFS=$'\t' read -r file line tag reason; do
  i=$((i + 1))
  where="$file:$line"
  case $tag in
    UNCLOSED) notok "$where: a fenced block is not closed"; continue ;;
    bash | shell | zsh | sh-session | shell-session)
      notok "$where: a block tagged '$tag': tag commands \`sh\` (run) or output \`console\`/\`text\`"
      continue ;;
    sh) ;;
    *) continue ;;
  esac
  if ! has_command "$TMP/b/$i"; then
    notok "$where: a \`sh\` block with no command in it"
    continue
  fi
  if [ -n "$reason" ]; then
    ok "# SKIP $where: $reason"
    continue
  fi
  if [ "$file" != "$cur" ]; then # a new file: a fresh shell state over a running stack
    cur=$file
    stack=yes
    ensure_stack || stack=no
    declare -px >"$state" 2>/dev/null
    printf 'cd %q\n' "$REPO" >>"$state"
  fi
  if [ "$stack" = no ]; then
    notok "$where: not run: the local stack did not start (deploy/local/up)"
    continue
  fi
  t0=$SECONDS
  if run_block "$file" "$line" "$TMP/b/$i" "$state"; then
    ok "$where ($((SECONDS - t0)) s)"
  else
    notok "$where ($((SECONDS - t0)) s)"
  fi
done <"$TMP/blocks.tsv"

# the end: deploy/local/down, and nothing the docs started may outlive it
if (cd "$REPO" && deploy/local/down) >"$TMP/down.log" 2>&1; then
  ok "deploy/local/down"
else
  notok "deploy/local/down"
  sed 's/^/#   /' "$TMP/down.log"
fi
cd / || exit 1
sleep 0.5
left=
for d in /proc/[0-9]*; do # named the clone in its command line, or runs inside it
  p=${d#/proc/}
  [ "$p" = $$ ] && continue
  if tr '\0' ' ' 2>/dev/null <"$d/cmdline" | grep -qF -- "$REPO" ||
    case $(readlink "$d/cwd" 2>/dev/null) in "$REPO" | "$REPO"/*) true ;; *) false ;; esac; then
    left="$left $p"
  fi
done
if [ -z "$left" ]; then
  ok "no process of the docs' commands is left running"
else
  notok "processes left running after deploy/local/down:"
  for p in $left; do echo "#   $p $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null)"; kill "$p" 2>/dev/null; done
fi
finish
