#!/bin/sh
# make demo: the daemon story (README.md, "Daemon mode"), end to end, in a
# temporary git repository, with the scripted agent standing in for Claude:
# init, run --background, status, logs, stop, resume --background, follow
# the log until the task completes.
# Needs only sh, git and the release binary; no network, no Claude.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
rasen=${RASEN:-$here/../target/release/rasen}
demo=$(mktemp -d "${TMPDIR:-/tmp}/rasen-demo.XXXXXX")
export SCRIPTED_DIR="$demo/agent"          # where the scripted agent keeps notes
export SCRIPTED_SUBTASKS=4                 # the initializer plans 4 subtasks
export SCRIPTED_CODER="slow:2"             # each subtask: commit, ~2 s of work, done
mkdir -p "$SCRIPTED_DIR" "$demo/repo"
cd "$demo/repo"

. "$here/agent/scripted-project.sh"
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
wait_for() { # wait_for SECONDS COMMAND...: poll until COMMAND succeeds
  limit=$1; shift; i=0
  while ! "$@" >/dev/null 2>&1; do
    i=$((i + 1)); [ "$i" -le $((limit * 10)) ] || { echo "demo: timed out waiting for: $*"; exit 1; }
    sleep 0.1
  done
}
progress_at_least() { "$rasen" status --json | grep -q "\"completed_subtasks\": *[$1-9]"; }
finished() { ! "$rasen" status >/dev/null; }

scripted_project demo

step rasen init --task "Implement user authentication"
"$rasen" init --task "Implement user authentication"

step rasen run --background
"$rasen" run --background

wait_for 30 progress_at_least 1
step rasen status
"$rasen" status || true

step rasen logs -n 8
"$rasen" logs -n 8

step rasen stop
"$rasen" stop

step rasen status
"$rasen" status || true

step rasen resume --background
"$rasen" resume --background

step "rasen logs --follow   (until the task completes)"
"$rasen" logs --follow -n 3 &
follower=$!
wait_for 60 finished
sleep 0.5 # let the follower print the last lines (it polls every 200 ms)
kill "$follower" 2>/dev/null || true
wait "$follower" 2>/dev/null || true

step rasen status
"$rasen" status || true

step git log --oneline
git log --oneline

echo
echo "Demo repository kept in $demo/repo (remove it with: rm -rf $demo)"
