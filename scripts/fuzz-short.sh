#!/usr/bin/env bash
# Fuzzes the codec and Store::open on arbitrary bytes (issue 4, point 6) for a short,
# fixed time per target: the CI run. The soak script calls it with a longer time.
#
#   scripts/fuzz-short.sh                 # 25 s per target
#   ES_FUZZ_SECONDS=3600 scripts/fuzz-short.sh
#
# cargo-fuzz needs nightly features; RUSTC_BOOTSTRAP=1 enables them on stable. It is
# installed if missing (about 40 s). New inputs go to target/fuzz-work/, so the
# committed seed corpus in fuzz/corpus/ only changes by hand. Crashes land in
# fuzz/artifacts/ and fail the script.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${ES_FUZZ_SECONDS:-25}
export RUSTC_BOOTSTRAP=1
export PATH="$HOME/.cargo/bin:$PATH"
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi
cargo fuzz build -O
for target in codec_decode open_bytes index_bytes; do
    work=target/fuzz-work/$target
    mkdir -p "$work"
    echo "== fuzzing $target for ${secs}s"
    # -malloc_limit_mb: an allocation driven by a hostile length field fails the run.
    # -timeout: one input taking longer than this is a hang.
    cargo fuzz run -O "$target" "$work" "fuzz/corpus/$target" -- \
        -max_total_time="$secs" -max_len=70000 -timeout=10 \
        -malloc_limit_mb=256 -rss_limit_mb=2048 -print_final_stats=1 2>&1 |
        tee "target/fuzz-work/$target.log" | grep -E "^(Done|stat::number_of_executed_units|INFO: Seed|==)|ERROR|panicked" || true
    # The open_bytes target's lock file and its side file (one per fuzzing process).
    rm -rf "${TMPDIR:-/tmp}"/es-fuzz-index-*
    rm -f /dev/shm/es-fuzz-*.lock /dev/shm/es-fuzz-*.lock-shm "${TMPDIR:-/tmp}"/es-fuzz-*.lock "${TMPDIR:-/tmp}"/es-fuzz-*.lock-shm
    if ! grep -q "^Done" "target/fuzz-work/$target.log"; then
        echo "fuzzing $target failed; see target/fuzz-work/$target.log and fuzz/artifacts/$target/" >&2
        exit 1
    fi
done
