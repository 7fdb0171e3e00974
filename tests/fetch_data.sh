#!/usr/bin/env bash
# Fetch the full CDNOW data set into .cache/data/ from the lifetimes 0.11.3 wheel on PyPI
# (lifetimes itself is never installed). Idempotent: does nothing if the data is present.
# Uses $PYTHON (default .venv/bin/python, else python3) for pip and the extraction.
set -euo pipefail

cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-.venv/bin/python}"
if ! command -v "$PYTHON" >/dev/null 2>&1; then
    PYTHON=python3
fi

DATA=.cache/data
WHEELS=.cache/wheels

if [ -f "$DATA/CDNOW_master.txt" ]; then
    echo "fetch_data: CDNOW data already in $DATA"
    exit 0
fi

mkdir -p "$DATA" "$WHEELS"
shopt -s nullglob nocaseglob
wheels=("$WHEELS"/lifetimes-0.11.3-*.whl)
if [ ${#wheels[@]} -eq 0 ]; then
    "$PYTHON" -m pip download --quiet --no-deps --disable-pip-version-check \
        lifetimes==0.11.3 -d "$WHEELS"
    wheels=("$WHEELS"/lifetimes-0.11.3-*.whl)
fi
if [ ${#wheels[@]} -eq 0 ]; then
    echo "fetch_data: no lifetimes-0.11.3 wheel in $WHEELS after pip download" >&2
    exit 1
fi

"$PYTHON" - "${wheels[0]}" "$DATA" <<'PY'
import fnmatch, os, sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if fnmatch.fnmatch(n, "lifetimes/datasets/CDNOW_sample.txt")
             or fnmatch.fnmatch(n, "lifetimes/datasets/cdnow_customers_summary*.csv")]
    names.append("lifetimes/datasets/CDNOW_master.txt")  # last: its presence marks completion
    for n in names:
        out = os.path.join(dest, os.path.basename(n))
        with open(out + ".tmp", "wb") as f:
            f.write(z.read(n))
        os.replace(out + ".tmp", out)
print(f"fetch_data: extracted {', '.join(os.path.basename(n) for n in names)} into {dest}")
PY
