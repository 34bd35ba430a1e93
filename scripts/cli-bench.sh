#!/usr/bin/env bash
# Times every `eventstore` command on a store of N events (default 1,000,000):
#
#   scripts/cli-bench.sh [N] [DIR]
#
# The store is built with `eventstore import` from generated export lines (N events
# over N/100 streams, ~60-byte JSON payloads, each event its own batch: the hardest
# case for a scan), in DIR (default: a temporary directory, removed afterwards).
# Prints one row per command: wall-clock seconds. See docs/cli.md for figures.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
DIR=${2:-}
if [[ -z "$DIR" ]]; then
    DIR=$(mktemp -d)
    trap 'rm -rf "$DIR"' EXIT
fi
cargo build --release --quiet -p eventstore-cli
ES=target/release/eventstore
STREAMS=$(( N / 100 > 0 ? N / 100 : 1 ))

python3 - "$N" "$STREAMS" > "$DIR/log.jsonl" <<'PY'
import sys
n, streams = int(sys.argv[1]), int(sys.argv[2])
def uid(x):
    h = f"{x:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
sids = [uid((1 << 100) + s) for s in range(streams)]
versions = [0] * streams
out = sys.stdout
t0 = 1_764_172_800_000_000
types = ["OrderPlaced", "OrderPaid", "OrderShipped", "CustomerNoted"]
buf = []
for i in range(n):
    s = (i * 7919) % streams
    v = versions[s]; versions[s] = v + 1
    buf.append(
        f'{{"global_position":{i},"stream_id":"{sids[s]}","stream_version":{v},'
        f'"event_id":"{uid(i + 1)}","event_type":"{types[i % 4]}","recorded_at":{t0 + i},'
        f'"payload":{{"order":{i},"amount":{i % 997},"note":"benchmark event"}},'
        f'"payload_encoding":"json","metadata":"","metadata_encoding":"text"}}\n')
    if len(buf) >= 10000:
        out.write("".join(buf)); buf = []
out.write("".join(buf))
PY

STORE="$DIR/bench.store"
# One row: wall-clock and CPU (user + system) seconds of a command, output discarded.
row() {
    local name=$1; shift
    local TIMEFORMAT="%R %U %S" times
    times=$( { time "$@" > /dev/null 2> "$DIR/stderr"; } 2>&1 ) || {
        echo "$name failed:"; cat "$DIR/stderr"; exit 1
    }
    read -r wall user sys <<< "$times"
    printf '%-36s %8.2f s %8.2f s\n' "$name" "$wall" "$(echo "$user + $sys" | bc)"
}
rm -f "$STORE" "$DIR/backup.store" "$DIR/salvaged.store" "$DIR/imported.store"
echo "eventstore commands on $N events, $STREAMS streams ($(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg))"
printf '%-36s %10s %10s\n' "command" "wall" "cpu"
row "import (build the store)" sh -c "$ES import -q $STORE < $DIR/log.jsonl"
printf '%-36s %8s MB\n' "store size" "$(( $(stat -c %s "$STORE") / 1000000 ))"
STREAM=$(head -n 1 "$DIR/log.jsonl" | sed 's/.*"stream_id":"\([^"]*\)".*/\1/')
row "info" "$ES" info "$STORE"
row "verify" "$ES" verify -q "$STORE"
row "streams" "$ES" streams -q "$STORE"
row "streams --json" "$ES" streams -q --json "$STORE"
row "streams --from S/2 --limit 10" "$ES" streams -q --from $(( STREAMS / 2 )) --limit 10 "$STORE"
row "dump (table)" "$ES" dump -q "$STORE"
row "dump --json" "$ES" dump -q --json "$STORE"
row "dump --json | head -n 1" sh -c "$ES dump -q --json $STORE | head -n 1"
row "dump --stream ID" "$ES" dump -q --stream "$STREAM" "$STORE"
row "dump --type-prefix Order --limit 10" "$ES" dump -q --type-prefix Order --limit 10 "$STORE"
row "dump --backward --limit 10" "$ES" dump -q --backward --limit 10 "$STORE"
EVENT=$(sed -n "$(( N / 2 + 1 ))p" "$DIR/log.jsonl" | sed 's/.*"event_id":"\([^"]*\)".*/\1/')
row "event ID" "$ES" event "$STORE" "$EVENT"
row "tail -n 10" "$ES" tail "$STORE"
row "tail -n 10 --type CustomerNoted" "$ES" tail --type CustomerNoted "$STORE"
row "export" "$ES" export -q "$STORE"
row "backup" "$ES" backup -q "$STORE" "$DIR/backup.store"
row "salvage (a sound store)" "$ES" salvage -q "$STORE" "$DIR/salvaged.store"
# append: export lines of one stream, without the fields append ignores anyway.
one_stream() {
    head -n "$1" "$DIR/log.jsonl" | sed -e "s/\"stream_id\":\"[^\"]*\"/\"stream_id\":\"$STREAM\"/" \
        -e 's/"global_position":[0-9]*,//; s/"stream_version":[0-9]*,//; s/"recorded_at":[0-9]*,//; s/"event_id":"[^"]*",//'
}
one_stream 100000 > "$DIR/append.jsonl"
row "append 100,000 lines --batch 1000" sh -c "$ES append -q --batch 1000 $STORE < $DIR/append.jsonl"
row "append 1,000 lines (1 batch each)" sh -c "head -n 1000 $DIR/append.jsonl | $ES append -q $STORE"
