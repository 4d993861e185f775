#!/bin/sh
# The cgroup v2 checks, run inside the qemu guest by scripts/vm-test (pure cgroup2 at
# /sys/fs/cgroup, root, the host's root filesystem read-only). Needs PROPELLER, ROOTFS, IMAGE
# (an oci: layout reference) and WORK.
P=${PROPELLER:?}
R=${ROOTFS:?}
I=${IMAGE:?}
W=${WORK:?}  # writable scratch directory
CG=/sys/fs/cgroup
export PROPELLER_SECCOMP_CACHE=off
pass=0
fail=0
ok() { echo "ok - $1"; pass=$((pass + 1)); }
bad() { echo "FAIL - $1"; fail=$((fail + 1)); }
check() { name=$1; shift; if "$@"; then ok "$name"; else bad "$name"; fi; }
leftovers() { find $CG -mindepth 1 -type d -name propeller 2>/dev/null; }

echo "# kernel $(uname -r); controllers: $(cat $CG/cgroup.controllers)"
check "pure cgroup v2 hierarchy" grep -q "cgroup2 /sys/fs/cgroup" /proc/mounts
check "memory, cpu and pids controllers available" sh -c "grep -qw memory $CG/cgroup.controllers && grep -qw cpu $CG/cgroup.controllers && grep -qw pids $CG/cgroup.controllers"

# memory.max: a hog is OOM-killed, detected from memory.events, reported as 137 + message.
$P run --rootfs $R --memory 32M --report $W/oom.json probe hog 200 >/dev/null 2>$W/oom.err
s=$?
check "memory.max: OOM kill exits 137 (got $s)" [ $s -eq 137 ]
check "memory.max: the OOM message is printed" grep -q "OOM killer: memory limit of 32 MiB exceeded" $W/oom.err
check "memory.events: oom_killed in the report" [ "$(jq -r .oom_killed $W/oom.json)" = true ]
peak=$(jq -r .memory_peak_bytes $W/oom.json)
check "memory.peak reported ($peak bytes, limit 33554432)" sh -c "[ $peak -gt 16000000 ] && [ $peak -le 33554432 ]"

# The child starts in its cgroup (clone3 CLONE_INTO_CGROUP, Linux 5.7+): no cgroup.procs write.
check "clone3: the container started in its cgroup ($(jq -r .cgroup_join $W/oom.json))" [ "$(jq -r .cgroup_join $W/oom.json)" = clone3 ]

PROPELLER_CGROUP_JOIN=procs $P run --rootfs $R --memory 32M --report $W/procs.json true
check "PROPELLER_CGROUP_JOIN=procs: it joins by cgroup.procs" [ "$(jq -r .cgroup_join $W/procs.json)" = cgroup.procs ]
# Timings under software emulation: relative only (printed, not checked).
ms_per_run() {
    start=$(date +%s%N)
    for _ in 1 2 3 4 5 6 7 8 9 10; do $P run --rootfs $R --memory 32M true; done
    echo $(( ($(date +%s%N) - start) / 10000000 ))
}
echo "# 10 runs of true, ms per run (emulated): started in the cgroup $(ms_per_run), cgroup.procs $(PROPELLER_CGROUP_JOIN=procs ms_per_run), started in the cgroup $(ms_per_run), cgroup.procs $(PROPELLER_CGROUP_JOIN=procs ms_per_run)"

# pids.max bounds a fork bomb.
forked=$($P run --rootfs $R --pids 16 probe forkbomb 100 | jq .forked)
check "pids.max: a fork bomb stops at 16 ($forked forks)" [ "${forked:-99}" -lt 16 ]

# cpu.max throttles a busy loop; cpu.stat usage is close to the quota.
$P run --rootfs $R --cpus 0.25 --report $W/cpu.json probe spin 4 >/dev/null
throttled=$(jq -r .throttled_periods $W/cpu.json)
share=$(jq -r '.cpu_usec / (.runtime_seconds * 1000000)' $W/cpu.json)
check "cpu.max: nr_throttled > 0 ($throttled)" [ "${throttled:-0}" -gt 0 ]
check "cpu.stat: usage ≈ quota (share of a CPU $share for --cpus 0.25)" awk "BEGIN { exit !($share > 0.1 && $share < 0.32) }"

# --timeout kills the whole tree through cgroup.kill.
$P run --rootfs $R --timeout 3s probe ignore-term >/dev/null 2>$W/to.err
s=$?
check "timeout: exit 124 (got $s)" [ $s -eq 124 ]
check "timeout: no process of the tree survives" sh -c "! pgrep -x probe >/dev/null"
check "nothing left behind at the root" [ -z "$(leftovers)" ]

# The delegation model: the agent starts alone in a delegated, non-root cgroup (as a systemd unit
# with Delegate=yes), moves itself to a leaf and creates tasks under <own>/propeller/<id>.
echo "+cpu +memory +pids" > $CG/cgroup.subtree_control
mkdir -p $CG/test.slice/agent.service
echo "+cpu +memory +pids" > $CG/test.slice/cgroup.subtree_control
A=$CG/test.slice/agent.service
sh -c "echo \$\$ > $A/cgroup.procs; exec $P run --rootfs $R --memory 48M probe sleep 20" >/dev/null &
agent=$!
task=""
for _ in $(seq 1 300); do
    task=$(find $A/propeller -mindepth 1 -maxdepth 1 -type d 2>/dev/null | head -1)
    [ -n "$task" ] && [ -n "$(cat $task/cgroup.procs 2>/dev/null)" ] && break
    sleep 0.2
done
check "delegated: the agent moved itself into $A/supervisor" grep -qx "$agent" $A/supervisor/cgroup.procs
check "delegated: controllers enabled below the agent" grep -qw memory $A/cgroup.subtree_control
check "delegated: the task runs in $A/propeller/<id>" [ -n "$task" ]
check "delegated: its memory.max is the limit" [ "$(cat $task/memory.max 2>/dev/null)" = 50331648 ]
kill -TERM $agent  # forwarded to the container's PID 1, which ignores it: kill the task instead
[ -n "$task" ] && echo 1 > $task/cgroup.kill
wait $agent
check "delegated: nothing left below the agent" [ ! -e $A/propeller ]

# Sharing a cgroup with another process: refused, with a message that says what to do.
mkdir -p $CG/test.slice/shared.scope
sleep 60 &
sibling=$!
echo $sibling > $CG/test.slice/shared.scope/cgroup.procs
sh -c "echo \$\$ > $CG/test.slice/shared.scope/cgroup.procs; exec $P run --rootfs $R --memory 32M true" 2>$W/shared.err
s=$?
check "shared cgroup: refused with 125 (got $s)" [ $s -eq 125 ]
check "shared cgroup: the message names Delegate=yes" grep -q "Delegate=yes" $W/shared.err
kill $sibling
wait $sibling 2>/dev/null

# run --image on this (older) kernel: the image store on the guest's tmpfs /run, both scratches.
# This kernel refuses an overlay on a detached tmpfs: the scratch is mounted in a thread's
# private mount namespace instead (the debug log says so).
D=/run/propeller-data
out=$($P run --data-dir $D --image $I --log-level debug 2>$W/image.err)
check "image: the image's command runs (got: $out)" sh -c "echo '$out' | grep -q '^hello from .*, a container on a Propeller proplet$'"
sed "s/^/# /" $W/image.err | grep -i "scratch\|overlay"
check "image: the scratch tmpfs was made (no fallback to directories)" sh -c "! grep -q 'writing to directories' $W/image.err"
$P run --data-dir $D --image $I --scratch-size 1M -- dd if=/dev/zero of=/big bs=64k count=64 2>$W/size.err
s=$?
check "image: --scratch-size 1M stops a 4M write (got $s)" sh -c "[ $s -eq 1 ] && grep -q 'No space left' $W/size.err"
check "image: no scratch mount seen outside the container" sh -c "! grep -q $D /proc/mounts"
for scratch in memory disk; do
    out=$($P run --data-dir $D --image $I --scratch $scratch -- sh -c 'echo written > /etc/motd && cat /etc/motd')
    check "image, --scratch $scratch: the container writes to its rootfs ($out)" [ "$out" = written ]
    left=$(ls -A $D/runs | tr "\n" " ")
    check "image, --scratch $scratch: nothing left in $D/runs ($left)" [ "$left" = ".rootfs " ]
    $P run --data-dir $D --image $I --scratch $scratch --memory 16M -- dd if=/dev/zero of=/big bs=1M count=64 2>/dev/null
    s=$?
    # Scratch in memory (or directories on this tmpfs) is charged to the container: OOM kill.
    check "image, --scratch $scratch: 64M written in a 16M container is an OOM kill (got $s)" [ $s -eq 137 ]
done
check "image: the cached rootfs is unchanged" sh -c "! grep -rq written $D/images/*/rootfs/etc/motd 2>/dev/null"
rm -rf $D

# Clean up what the test made.
rmdir $A/supervisor $A $CG/test.slice/shared.scope $CG/test.slice 2>/dev/null
check "nothing left behind" [ -z "$(leftovers)" ]

echo "vm-tests: $pass passed, $fail failed"
[ $fail -eq 0 ]
