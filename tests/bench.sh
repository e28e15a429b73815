#!/bin/sh
# make bench: prints performance figures. Measured, never asserted: the
# numbers depend on the machine, so no test fails on them.
#   status latency, daemon RSS, binary size, build time, follow latency,
#   streaming throughput; each time beside its floor (/bin/true, cat).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
rasen=$root/target/release/rasen
work=$(mktemp -d "${TMPDIR:-/tmp}/rasen-bench.XXXXXX")
trap 'rasen_stop; rm -rf "$work"' EXIT
rasen_stop() { [ -d "$work/repo/.rasen" ] && (cd "$work/repo" && "$rasen" stop --force >/dev/null 2>&1) || true; }
. "$here/agent/scripted-project.sh"
now_ns() { date +%s%N; }
ms() { echo "$1" | awk '{ printf "%.2f", $1 / 1000000 }'; }

# Build time: a clean release build of rasen itself (dependencies cached).
(cd "$root" && cargo clean -q --release -p rasen && t0=$(now_ns) && cargo build -q --release && t1=$(now_ns) \
  && echo "build time (release, rasen crate only): $(ms $((t1 - t0))) ms")
echo "binary size (release): $(wc -c < "$rasen") bytes"

export SCRIPTED_DIR="$work/agent"
mkdir -p "$SCRIPTED_DIR" "$work/repo"
cd "$work/repo"
scripted_project bench
"$rasen" init --task "bench" >/dev/null

# Streaming throughput and daemon RSS: one subtask whose agent prints 200 MB.
export SCRIPTED_SUBTASKS=2 SCRIPTED_CODER_t1="flood:200" SCRIPTED_CODER="slow:3"
"$rasen" run --background >/dev/null
pid=$(cat .rasen/rasen.pid)
t0=$(now_ns)
peak=0
# Until t1 is completed (at most 5 minutes), sampling the daemon's RSS.
n=0
until grep -q '"completed_subtasks": *[1-9]' .rasen/status.json 2>/dev/null; do
  rss=$(awk '/VmRSS/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)
  [ "${rss:-0}" -gt "$peak" ] && peak=$rss
  n=$((n + 1)); [ $n -lt 6000 ] || { echo "bench: the flood subtask did not complete"; exit 1; }
  sleep 0.05
done
t1=$(now_ns)
line=$(head -c 1023 /dev/zero | tr '\0' x)
f0=$(now_ns); yes "$line" | head -n $((200 * 1024)) | cat > /dev/null; f1=$(now_ns)
echo "streaming throughput: 200 MB of agent output in $(ms $((t1 - t0))) ms (floor: the same 200 MB through cat, $(ms $((f1 - f0))) ms)"
echo "daemon peak RSS while streaming: ${peak} KiB"

# Status latency: the mean of 200 calls while the daemon runs.
t0=$(now_ns)
i=0; while [ $i -lt 200 ]; do "$rasen" status >/dev/null || true; i=$((i + 1)); done
t1=$(now_ns)
f0=$(now_ns)
i=0; while [ $i -lt 200 ]; do /bin/true; i=$((i + 1)); done
f1=$(now_ns)
echo "status latency (mean of 200, daemon running): $(ms $(((t1 - t0) / 200))) ms (floor: /bin/true, $(ms $(((f1 - f0) / 200))) ms)"

# Follow latency: time from appending a line to the follower printing it.
"$rasen" stop >/dev/null || true
mkfifo "$work/follow.out"
"$rasen" logs -f -n 0 > "$work/follow.out" &
follower=$!
exec 3< "$work/follow.out"
total=0; n=10
i=0; while [ $i -lt $n ]; do
  t0=$(now_ns); echo "bench line $i" >> .rasen/rasen.log; read -r _ <&3; t1=$(now_ns)
  total=$((total + t1 - t0)); i=$((i + 1))
done
kill "$follower" 2>/dev/null || true
echo "follow latency (mean of $n appends, 200 ms polling): $(ms $((total / n))) ms"
