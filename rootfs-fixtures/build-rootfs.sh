#!/bin/sh
# Builds the test root filesystem: busybox-static with its applets, the static probe program,
# /etc/passwd and /etc/group with a few users, and the usual empty mount points.
#   rootfs-fixtures/build-rootfs.sh OUTDIR
# Needs busybox-static and gcc (scripts/setup installs both).
set -eu
out=${1:?usage: build-rootfs.sh OUTDIR}
here=$(cd "$(dirname "$0")" && pwd)
busybox=$(command -v busybox || echo /bin/busybox)
[ -x "$busybox" ] || { echo "build-rootfs.sh: busybox-static is not installed" >&2; exit 1; }
file "$busybox" 2>/dev/null | grep -q "statically linked" || [ ! -x /usr/bin/file ] || {
    echo "build-rootfs.sh: $busybox is not statically linked (install busybox-static)" >&2; exit 1; }

mkdir -p "$out"
cd "$out"
mkdir -p bin etc proc dev sys tmp root home/app usr/bin
chmod 1777 tmp
chmod 700 root
cp "$busybox" bin/busybox
for applet in sh ash echo cat ls sleep true false id hostname env ps grep head tail dd yes kill \
    touch mkdir rm wc seq sed printf stat uname mount umount ip awk sort tr cut test expr whoami; do
    ln -sf busybox "bin/$applet"
done
gcc -static -O2 -o bin/probe "$here/probe.c"
printf '#!/bin/sh\necho never\n' > bin/not-executable
chmod 0644 bin/not-executable
cat > etc/passwd <<'P'
root:x:0:0:root:/root:/bin/sh
app:x:1000:1000:app:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
P
cat > etc/group <<'G'
root:x:0:
staff:x:50:app
app:x:1000:
nogroup:x:65534:
G
chown 1000:1000 home/app
