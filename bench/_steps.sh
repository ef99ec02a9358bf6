# Shared helpers of the resumable bench shell scripts (source it; needs PY for split_ids).
# step: a timestamped heading; todo FILE: true while FILE does not exist, so a step whose output
# exists is skipped (rerun a script to resume); split_ids SPLITS_JSON KEY: that split's ids.
step() { echo; echo "=== $* ($(date -u +%H:%M:%S))"; }
todo() { [ ! -e "$1" ]; }
split_ids() { $PY -c "import json,sys; print(' '.join(json.load(open(sys.argv[1]))[sys.argv[2]]))" "$1" "$2"; }
