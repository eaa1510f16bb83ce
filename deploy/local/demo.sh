#!/usr/bin/env bash
# Start assay on the embedded default (SQLite, in-process bus), stream the demo
# sweep into it, import a real learning-rate sweep beside it and print the URL.
# The server keeps running; stop it with `make demo-stop`.
set -euo pipefail

demo_dir=${DEMO_DIR:-.demo}
port=${DEMO_PORT:-8080}
bin=${BIN:-.venv/bin}
pid_file=$demo_dir/server.pid

if [ "${1:-}" = stop ]; then
    if [ -f "$pid_file" ] && kill "$(cat "$pid_file")" 2>/dev/null; then
        echo "stopped the demo server"
    else
        echo "no demo server is running"
    fi
    rm -f "$pid_file"
    exit 0
fi

mkdir -p "$demo_dir"
key_file=$demo_dir/api-key
if [ ! -s "$key_file" ]; then
    "$bin/python" -c 'import secrets; print("assay_" + secrets.token_urlsafe(32))' > "$key_file"
    chmod 600 "$key_file"
fi
key=$(cat "$key_file")
url=http://127.0.0.1:$port

if [ -f "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then
    echo "the demo server is already running (pid $(cat "$pid_file"))"
else
    ASSAY_BOOTSTRAP_API_KEY=$key nohup "$bin/assay" serve --port "$port" \
        --data-dir "$demo_dir/data" > "$demo_dir/server.log" 2>&1 &
    echo $! > "$pid_file"
    for _ in $(seq 100); do
        if "$bin/python" -c "import httpx, sys; httpx.get('$url/healthz').raise_for_status()" 2>/dev/null; then
            break
        fi
        if ! kill -0 "$(cat "$pid_file")" 2>/dev/null; then
            echo "the server did not start; its log follows" >&2
            cat "$demo_dir/server.log" >&2
            exit 1
        fi
        sleep 0.2
    done
fi

ASSAY_SERVER=$url ASSAY_API_KEY=$key "$bin/python" examples/sweep.py --project demo-sweep

# Real history beside the live sweep: the CS336 learning-rate sweep, whose
# highest rates diverge. The logs are read where they are (ASSAY_REAL_DATA,
# then ../shared/data/real beside the repository, then /work/shared/data/real),
# never copied; without them the demo goes on without this project.
repo=$(cd "$(dirname "$0")/../.." && pwd)
real_data=""
for candidate in "${ASSAY_REAL_DATA:-}" "$repo/../shared/data/real" /work/shared/data/real; do
    if [ -n "$candidate" ] && [ -d "$candidate/cs336_lr_batch_sweep/experiments" ]; then
        real_data=$candidate
        break
    fi
done
imported=""
if [ -z "$real_data" ]; then
    echo "note: the real training logs were not found (set ASSAY_REAL_DATA);" \
        "the demo goes on without the imported learning-rate sweep"
elif ASSAY_SERVER=$url ASSAY_API_KEY=$key "$bin/assay" import \
        "$real_data"/cs336_lr_batch_sweep/experiments/lr_sweep_* --project cs336-lr-sweep; then
    imported=cs336-lr-sweep
else
    echo "note: importing the learning-rate sweep failed (see above); the demo goes on without it"
fi

cat <<TEXT

The sweep is stored. Open the workspace in a browser (this link signs you in):

    $url/login?token=$key&next=/projects/demo-sweep

The read API takes the key as "Authorization: Bearer \$(cat $key_file)", for example:

    curl -H "Authorization: Bearer \$(cat $key_file)" $url/api/v1/projects/demo-sweep/runs

or read it from Python:

    ASSAY_SERVER=$url ASSAY_API_KEY=\$(cat $key_file) $bin/python -c \\
        'import assay; print([(r.name, r.state) for r in assay.Api().runs("demo-sweep")])'

The server keeps running (log: $demo_dir/server.log); stop it with: make demo-stop
TEXT
if [ -n "$imported" ]; then
    cat <<TEXT

Real history from the CS336 learning-rate sweep is in the project $imported:

    curl -H "Authorization: Bearer \$(cat $key_file)" $url/api/v1/projects/$imported/runs
TEXT
fi
