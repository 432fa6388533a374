#!/bin/bash
# Compile check of the FreeBSD KLD on Linux, with FreeBSD's headers from the
# ziglang wheel (cached under /var/cache/vrstack/ziglang).  Every source of
# the module is compiled as kernel code for x86_64-freebsd with -Werror, and
# dp-core's objects must need nothing but the compiler's mem* helpers.
# What this does and does not prove: docs/freebsd.md.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
PYTHON=${PYTHON:-python3}
ZIG_VERSION=0.17.1
cache=/var/cache/vrstack/ziglang
zigdir=$cache/ziglang-$ZIG_VERSION
if [ ! -x "$zigdir/zig" ]; then
	mkdir -p "$cache"
	tmp=$(mktemp -d "$cache/.tmp-XXXXXX")
	trap 'rm -rf "$tmp"' EXIT
	if ! ls "$cache"/ziglang-"$ZIG_VERSION"-*.whl >/dev/null 2>&1; then
		"$PYTHON" -m pip download -q --no-deps "ziglang==$ZIG_VERSION" -d "$tmp/wheel"
		mv "$tmp"/wheel/*.whl "$cache/"
	fi
	"$PYTHON" -m zipfile -e "$(ls "$cache"/ziglang-"$ZIG_VERSION"-*.whl | head -n1)" "$tmp/x"
	chmod +x "$tmp/x/ziglang/zig" # zipfile drops the mode bits
	mv "$tmp/x/ziglang" "$zigdir"
fi
out=$(mktemp -d /tmp/vrk-freebsd-XXXXXX)
trap 'rm -rf "$out"' EXIT
flags=(-target x86_64-freebsd -D_KERNEL -DKLD_MODULE -ffreestanding -std=gnu11 -O2
	-Wall -Wextra -Werror -I"$here/shim" -I"$here/compat" -I"$here/../include"
	-I"$here/../dp-core")
srcs=("$here/vr_freebsd.c" "$here"/../dp-core/*.c)
for src in "${srcs[@]}"; do
	"$zigdir/zig" cc "${flags[@]}" -c "$src" -o "$out/$(basename "$src" .c).o"
done
# dp-core knows no OS: its only outside symbols are mem*/strlen builtins.
extra=$(nm -u "$out"/vr_{msg,ctl,tables,flow,fwd,tunnel,pkt}.o | awk 'NF==2 {print $2}' |
	sort -u | grep -v -x -E 'memcpy|memset|memmove|memcmp|strlen|vr_.*' || true)
if [ -n "$extra" ]; then
	echo "freebsd: dp-core needs symbols the OS layer should provide: $extra" >&2
	exit 1
fi
# Kernel functions the glue calls (must exist in the target kernel; listed
# for review, not checked against a kernel here).
glue=$(nm -u "$out/vr_freebsd.o" | awk 'NF==2 {print $2}' | grep -v '^vr_' | sort -u)
echo "freebsd: ${#srcs[@]} sources compile as x86_64-freebsd kernel code (zig $ZIG_VERSION headers)"
echo "freebsd: glue uses $(echo "$glue" | wc -l) kernel symbols: $(echo $glue)"
