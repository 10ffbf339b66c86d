#!/usr/bin/env bash
# Builds bench/frameworks/.venv for run.py: torch 2.13.0 (the CPU build on disk) first, then
# requirements.txt. A stamp holding the requirements' hash makes a second run return at once.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
stamp="$venv/.installed"
wanted="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"

if [[ -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]]; then
    echo "bench/frameworks/.venv is up to date"
    exit 0
fi

[[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
# Alone and first: an unpinned torch, asked for by a dependency, would be a multi-GB CUDA build.
"$venv/bin/pip" install --quiet torch==2.13.0
"$venv/bin/pip" install --quiet -r "$here/requirements.txt"
"$venv/bin/python" -c 'import torch; assert torch.__version__.startswith("2.13.0"), torch.__version__'
echo "$wanted" > "$stamp"
echo "bench/frameworks/.venv is ready"
