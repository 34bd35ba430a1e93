#!/usr/bin/env bash
# Fails (non-zero, with a diff) when the committed include/eventstore.h differs from
# what build.rs generates from src/ffi/ right now.
#
# The header is regenerated into a temporary file and compared with the copy in git's
# index (for a fresh clone: the committed one), not with the working tree's, because
# every `cargo build` rewrites the working tree's copy. Outside a git checkout, the
# working tree's copy is compared.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git show :include/eventstore.h >"$tmp/committed.h"
    what="the committed (staged) include/eventstore.h"
else
    cp include/eventstore.h "$tmp/committed.h"
    what="include/eventstore.h"
fi
EVENTSTORE_HEADER_OUT="$tmp/generated.h" cargo build --quiet --lib
if ! diff -u --label "$what" --label "generated from src/ffi" "$tmp/committed.h" "$tmp/generated.h"; then
    echo "check-header: $what is out of date: run 'cargo build' and commit include/eventstore.h" >&2
    exit 1
fi
echo "check-header: include/eventstore.h is in sync with src/ffi"
