#!/usr/bin/env bash
# Writes Tests/FormatsTests/Fixtures/gguf_writer/q4_k.bin: float blocks and the Q4_K blocks that
# llama.cpp's quantize_row_q4_K_ref makes of them (gguf-py has no Q4_K quantiser).
# Usage: scripts/make_q4k_fixtures.sh [LLAMA_CPP_CHECKOUT]   (default: fetch the pinned commit)
#        scripts/make_q4k_fixtures.sh --lib OUT.so [LLAMA_CPP_CHECKOUT]
#          builds the reference quantiser as a shared library instead (quantize_row_q4_K_ref,
#          for scripts/check_apply_patch.py)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
commit=c392e5094deaf2d1a7c18683214f007fad3fe42b
lib=""
if [ "${1:-}" = "--lib" ]; then lib="$2"; shift 2; fi
src="${1:-}"
if [ -z "$src" ]; then
    src="$(mktemp -d)"
    git -C "$src" init -q
    git -C "$src" fetch -q --depth 1 https://github.com/ggerganov/llama.cpp "$commit"
    git -C "$src" checkout -q FETCH_HEAD
fi
cc=(gcc -O2 -ffp-contract=off -std=gnu11 -I"$src/ggml/include" -I"$src/ggml/src"
    "$root/scripts/q4k_reference.c" "$src/ggml/src/ggml-quants.c" -lm)
if [ -n "$lib" ]; then
    "${cc[@]}" -shared -fPIC -o "$lib"
    exit 0
fi
out="$(mktemp -d)"
"${cc[@]}" -o "$out/q4k_reference"
"$out/q4k_reference" > "$root/Tests/FormatsTests/Fixtures/gguf_writer/q4_k.bin"
echo "wrote Tests/FormatsTests/Fixtures/gguf_writer/q4_k.bin (llama.cpp $commit)"
