#!/usr/bin/env bash
# The long runs of the crash, fault and hostile-input suite (issue 4), in release
# builds. Each step prints its figures; all of them are collected at the end and in
# target/soak/summary.txt. Every knob can be raised from the environment:
#
#   SOAK_KILL9_ROUNDS        kill -9 rounds                         (default 1000)
#   SOAK_CUT_STRIDE_LARGE    cut-point stride of the large store    (default 61; 1 = every byte)
#   SOAK_TORN_STRIDE         torn-write stride in power-loss images (default 1 = every byte)
#   SOAK_BLOCK_SUBSETS       random 4 KiB block subsets per point   (default 64)
#   SOAK_PL_BATCHES          batches in each power-loss scenario    (default 20)
#   SOAK_PL_SEEDS            power-loss scenarios run with N seeds  (default 3)
#   SOAK_STRACE_MAX_N        strace inject: N = 1..this per syscall (default 60)
#   SOAK_HOSTILE_CASES       deterministic hostile files            (default 200000)
#   SOAK_SHIFT_BATCHES       deleted/inserted ranges up to N batches (default 4; the
#                            ranges up to 1 batch run at every byte offset)
#   SOAK_CONTENTION_ROUNDS   contention rounds per phase            (default 3000)
#   SOAK_FUZZ_SECONDS        cargo-fuzz time per target             (default 600)
#   SOAK_INDEX_KILL_ROUNDS   kill -9 rounds during index checkpoints (default 200)
#   (damageindex: tests/damage_with_index.rs with ES_DAMAGE_INDEX_FULL=1: 6 MiB stores,
#   more places per shape, every id looked up; about 140 s)
#
#   scripts/soak.sh                       # everything (about 40 min on 2 cores)
#   SOAK_ONLY="kill9 fuzz" scripts/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/soak
mkdir -p "$out"
only=${SOAK_ONLY:-"cuts flips shifts power kill9 index damageindex faults strace contention hostile fuzz"}

if ! command -v strace >/dev/null; then
    apt-get update -qq && apt-get install -y -qq strace
fi
cargo build --release --tests -q

step() {
    local name=$1
    shift
    case " $only " in *" $name "*) ;; *) return 0 ;; esac
    echo "== $name"
    local t0=$SECONDS
    if ! env "$@" 2>&1 | tee "$out/$name.log" | grep -E "nothing acknowledged lost|failures|no panic|one winner|test result|panicked|FAILED|SKIPPED|Done [0-9]+ runs"; then
        :
    fi
    if grep -qE "FAILED|panicked|error: test failed" "$out/$name.log"; then
        echo "soak step $name FAILED; see $out/$name.log" >&2
        exit 1
    fi
    echo "   ($name: $((SECONDS - t0)) s)"
    echo "$name: $((SECONDS - t0)) s" >>"$out/times.txt"
}

rm -f "$out/times.txt"
t="cargo test --release -q --test"
step cuts ES_CUT_STRIDE_SMALL=1 ES_CUT_STRIDE_LARGE="${SOAK_CUT_STRIDE_LARGE:-61}" \
    ES_CUT_APPEND_EVERY=1 ES_CUT_LARGE_BATCHES=40 ES_TAIL_RANDOM=500 \
    $t crash_cut_points -- --nocapture
step flips ES_FLIP_MASKS=ff,01,80,55 ES_FLIP_BATCHES=16 $t crash_flips -- --nocapture
step shifts ES_SHIFT_EVERY_PLACE=1 ES_SHIFT_MAX_BATCHES=1 $t crash_shifts -- --nocapture
cp "$out/shifts.log" "$out/shifts-every-place.log" 2>/dev/null || true
step shifts ES_SHIFT_PLACES=200 ES_SHIFT_MAX_BATCHES="${SOAK_SHIFT_BATCHES:-4}" \
    $t crash_shifts -- --nocapture
for seed in $(seq 1 "${SOAK_PL_SEEDS:-3}"); do
    step power ES_SEED="$seed" ES_TORN_STRIDE="${SOAK_TORN_STRIDE:-1}" \
        ES_BLOCK_SUBSETS="${SOAK_BLOCK_SUBSETS:-64}" ES_PL_BATCHES="${SOAK_PL_BATCHES:-20}" \
        ES_PL_CONTINUE_EVERY=5 $t crash_power_loss -- --nocapture
    cp "$out/power.log" "$out/power-$seed.log" 2>/dev/null || true
done
step kill9 ES_KILL9_ROUNDS="${SOAK_KILL9_ROUNDS:-1000}" \
    $t crash_kill9 kill9 -- --nocapture
step index ES_INDEX_FLIP_STRIDE=1 ES_INDEX_KILL_ROUNDS="${SOAK_INDEX_KILL_ROUNDS:-200}" \
    $t index_file -- --nocapture
step damageindex ES_DAMAGE_INDEX_FULL=1 $t damage_with_index -- --nocapture
step faults ES_FAULT_BATCHES=24 $t crash_io_faults -- --nocapture
step upgrade ES_UPGRADE_ROUNDS="${SOAK_UPGRADE_ROUNDS:-2000}" $t probe_side_file -- --nocapture
step strace ES_STRACE_MAX_N="${SOAK_STRACE_MAX_N:-60}" \
    $t crash_kill9 strace -- --ignored --nocapture
step contention ES_CONTENTION_ROUNDS="${SOAK_CONTENTION_ROUNDS:-3000}" \
    $t contention -- --nocapture
step hostile ES_HOSTILE_CASES="${SOAK_HOSTILE_CASES:-200000}" \
    $t hostile_files hostile_bytes -- --nocapture
step fuzz ES_FUZZ_SECONDS="${SOAK_FUZZ_SECONDS:-600}" scripts/fuzz-short.sh

echo
echo "== summary"
grep -hE "nothing acknowledged lost|no panic|one winner|Done [0-9]+ runs|SKIPPED" "$out"/*.log |
    sort -u | tee "$out/summary.txt"
cat "$out/times.txt"
