#!/usr/bin/env bash
# Builds plugins/hit-ratio.wasm (the hit-ratio watcher, Python) with componentize-py.
#
#   plugins/hit-ratio/build.sh          build when a source changed, else do nothing
#   FORCE=1 plugins/hit-ratio/build.sh  build anyway
#
# Needs python3 (3.10+) with venv and pip, and PyPI for the first run:
# componentize-py (pinned in requirements.txt) goes into plugins/hit-ratio/.venv.
# Python bindings for the WIT world go into plugins/hit-ratio/bindings (for
# editors and test_app.py; componentize-py generates its own while building).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

python="${PYTHON:-python3}"
venv=.venv
wit=../../wit
world=watcher
out=../hit-ratio.wasm
sources=(app.py hit_ratio.py requirements.txt build.sh "$wit")

# The venv, re-created when requirements.txt changes.
if [[ ! -x $venv/bin/componentize-py ]] || ! cmp -s requirements.txt "$venv/requirements.txt"; then
    echo "hit-ratio: installing $(grep -v '^#' requirements.txt | xargs) into plugins/hit-ratio/$venv"
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r requirements.txt
    cp requirements.txt "$venv/requirements.txt"
fi
cpy=("$venv/bin/componentize-py" --quiet -d "$wit" -w "$world")

# Nothing changed since the last build: done.
if [[ -z ${FORCE:-} && -f $out && -d bindings ]] \
    && [[ -z $(find "${sources[@]}" "$venv/requirements.txt" -newer "$out" -print -quit) ]]; then
    echo "hit-ratio: plugins/hit-ratio.wasm is up to date"
    exit 0
fi

rm -rf bindings
"${cpy[@]}" bindings bindings

# componentize-py adds a venv's site-packages to the component's path when
# VIRTUAL_ENV is set; the watcher needs nothing but the stdlib.
mkdir -p .build
env -u VIRTUAL_ENV "${cpy[@]}" componentize -p . -o .build/hit-ratio.wasm app
# Renamed into place, so a running daemon never loads a half-written file.
mv -f .build/hit-ratio.wasm "$out"
echo "hit-ratio: built plugins/hit-ratio.wasm ($(wc -c < "$out") bytes)"
