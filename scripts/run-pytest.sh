#!/bin/bash
# pytest exits 5 when it collects nothing: treat that as a failure with a clear
# message, since every gate that calls this expects tests to exist.
set -uo pipefail
python -m pytest -q "$@"
rc=$?
if [[ $rc -eq 5 ]]; then
    echo "run-pytest: no tests were collected from $* — that is a failure" >&2
    exit 1
fi
exit $rc
