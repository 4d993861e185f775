# Shared by the scripts: PATH for Swift, the repository root, build helpers.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH="$PATH:/opt/swift/usr/bin"
cd "$ROOT"

# Builds the release binaries, statically linked to the Swift runtime (starts in ~2 ms instead of
# ~7 ms with the shared Foundation libraries; the same binary runs on a machine without Swift).
# They live in .build-release, apart from the debug build in .build, so switching between
# `scripts/test` and `scripts/bench` rebuilds neither.
build_release() {
    local product
    for product in propeller propeller-run propeller-bench propeller-bench-scheduler propeller-fleet; do
        swift build -c release --static-swift-stdlib --scratch-path "$ROOT/.build-release" --product "$product" "$@" >&2
    done
    echo "$ROOT/.build-release/release"
}

# A TCP port on 127.0.0.1 that nothing listens on now, below the ephemeral range (32768 and up
# on Linux): a probe of an ephemeral port can connect to itself (source port = destination
# port), which looks like a listener and leaves a TIME-WAIT socket that the server then cannot
# bind.
free_port() {
    local p
    while :; do
        p=$((20000 + RANDOM % 12000))
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
    done
}

# Waits until something listens on 127.0.0.1:$1 (at most 15 s).
wait_port() {
    for _ in $(seq 150); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on 127.0.0.1:$1" >&2
    return 1
}

# Builds the fixture image (busybox rootfs + probe) as an OCI layout in $1/oci, image "hello",
# whose command prints a greeting.
build_fixture_image() {
    local dir=$1
    rootfs-fixtures/build-rootfs.sh "$dir/rootfs" >/dev/null
    (
        cd "$dir"
        umoci init --layout oci >/dev/null
        umoci new --image oci:hello >/dev/null
        umoci unpack --image oci:hello bundle >/dev/null
        cp -a rootfs/. bundle/rootfs/
        umoci repack --image oci:hello bundle >/dev/null
        rm -rf bundle
        umoci config --image oci:hello --config.cmd /bin/sh --config.cmd -c \
            --config.cmd 'echo "hello from $(hostname), a container on a Propeller proplet"' \
            --clear=config.entrypoint --architecture amd64 --os linux >/dev/null
    )
}

# Starts mosquitto, docker-registry (holding the fixture image as hello:latest), the manager,
# the image proxy and one proplet on loopback, all under $1; sets BROKER_PORT REGISTRY
# MANAGER_URL PROXY_PORT TOKEN and PIDS (stopped by stop_services). PROPLET_ARGS adds flags to
# the proplet.
start_services() {
    local dir=$1 bin=$2
    PIDS=()
    BROKER_PORT=$(free_port)
    printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 0\nset_tcp_nodelay true\nlog_dest none\n' "$BROKER_PORT" > "$dir/mosquitto.conf"
    mosquitto -c "$dir/mosquitto.conf" & PIDS+=($!)
    local reg_port; reg_port=$(free_port)
    REGISTRY=127.0.0.1:$reg_port
    printf 'version: 0.1\nlog: {level: error}\nstorage: {filesystem: {rootdirectory: %s}}\nhttp: {addr: %s}\n' "$dir/registry" "$REGISTRY" > "$dir/registry.yml"
    docker-registry serve "$dir/registry.yml" >"$dir/registry.log" 2>&1 & PIDS+=($!)
    wait_port "$BROKER_PORT"
    wait_port "$reg_port"
    build_fixture_image "$dir"
    skopeo copy -q --dest-tls-verify=false "oci:$dir/oci:hello" "docker://$REGISTRY/hello:latest"
    TOKEN=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
    (umask 077 && echo "$TOKEN" > "$dir/token")
    local http_port; http_port=$(free_port)
    MANAGER_URL=http://127.0.0.1:$http_port
    "$bin/propeller" manager --mqtt "tcp://127.0.0.1:$BROKER_PORT" --http "127.0.0.1:$http_port" --data-dir "$dir/manager" \
        --token-file "$dir/token" --log-level "${LOG_LEVEL:-notice}" 2>"$dir/manager.log" & PIDS+=($!)
    wait_port "$http_port"
    PROXY_PORT=$(free_port)
    "$bin/propeller" proxy --mqtt "tcp://127.0.0.1:$BROKER_PORT" --http "127.0.0.1:$PROXY_PORT" --data-dir "$dir/proxy" \
        --log-level "${LOG_LEVEL:-notice}" 2>"$dir/proxy.log" & PIDS+=($!)
    PROXY_PID=$!
    wait_port "$PROXY_PORT"
    "$bin/propeller" proplet --mqtt "tcp://127.0.0.1:$BROKER_PORT" --data-dir "$dir/proplet" --name demo-proplet \
        --log-level "${LOG_LEVEL:-notice}" ${PROPLET_ARGS:-} 2>"$dir/proplet.log" & PIDS+=($!)
    export PROPELLER_MANAGER_URL=$MANAGER_URL PROPELLER_API_TOKEN=$TOKEN
    for _ in $(seq 100); do
        "$bin/propeller" proplet list 2>/dev/null | grep -q alive && return 0
        sleep 0.1
    done
    echo "the proplet did not register; its log:" >&2
    cat "$dir/proplet.log" >&2
    return 1
}

stop_services() {
    local pid
    # The daemons first (SIGTERM: the proplet drains and says goodbye), then the servers.
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        pid=${PIDS[$i]}
        kill "$pid" 2>/dev/null || continue
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    done
}
