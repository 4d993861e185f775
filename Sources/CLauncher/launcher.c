// Container launcher: see include/launcher.h for the contract.
//
// Everything in child_main runs in a child that shares the parent's memory (CLONE_VM|CLONE_VFORK)
// on a stack the parent allocated. It may only make system calls and touch its own stack and the
// spec. In particular, uid/gid/capability changes use raw syscalls: glibc's setuid() family would
// try to broadcast the change to the *parent's* threads.
#include "launcher.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <pthread.h>
#include <unistd.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif

_Static_assert(sizeof(struct pl_bpf_program) == sizeof(struct sock_fprog), "pl_bpf_program must match sock_fprog");
_Static_assert(offsetof(struct pl_bpf_program, filter) == offsetof(struct sock_fprog, filter), "pl_bpf_program must match sock_fprog");

// ---- helpers usable in the child (async-signal-safe only) ----

static size_t bounded_copy(char *dst, size_t cap, size_t at, const char *src) {
    if (src == NULL) return at;
    while (*src != '\0' && at + 1 < cap) dst[at++] = *src++;
    dst[at] = '\0';
    return at;
}

__attribute__((noreturn)) static void fail(struct pl_spec *s, int stage, const char *detail) {
    int err = errno;
    s->err_stage = stage;
    s->err_errno = err;
    s->err_detail[0] = '\0';
    bounded_copy(s->err_detail, sizeof s->err_detail, 0, detail);
    if (stage == PL_STAGE_EXEC) _exit(err == ENOENT ? 127 : 126);
    _exit(125);
}

static void ensure_dir(struct pl_spec *s, const char *path, mode_t mode) {
    if (mkdir(path, mode) < 0 && errno != EEXIST) fail(s, PL_STAGE_MKDIR, path);
}

/// mkdir -p for an absolute path, using a stack buffer.
static int mkdir_all(const char *path, mode_t mode) {
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char saved = buf[i];
            buf[i] = '\0';
            if (mkdir(buf, mode) < 0 && errno != EEXIST) return -1;
            buf[i] = saved;
        }
    }
    return 0;
}

/// The mount flags a remount must carry over so it does not clear them by accident.
static unsigned long kept_mount_flags(const char *path) {
    struct statfs st;
    unsigned long out = 0;
    if (statfs(path, &st) < 0) return MS_NOSUID | MS_NODEV | MS_NOEXEC;
    if (st.f_flags & ST_NOSUID) out |= MS_NOSUID;
    if (st.f_flags & ST_NODEV) out |= MS_NODEV;
    if (st.f_flags & ST_NOEXEC) out |= MS_NOEXEC;
    if (st.f_flags & ST_NOATIME) out |= MS_NOATIME;
    if (st.f_flags & ST_NODIRATIME) out |= MS_NODIRATIME;
    if (st.f_flags & ST_RELATIME) out |= MS_RELATIME;
    return out;
}

static int remount_readonly(const char *path) {
    return mount(NULL, path, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | kept_mount_flags(path), NULL);
}

struct dev_node {
    const char *path;
};

/// The host device nodes a container sees (bind-mounted, not created).
static const struct dev_node default_devices[] = {
    {"/dev/null"}, {"/dev/zero"}, {"/dev/full"}, {"/dev/random"}, {"/dev/urandom"}, {"/dev/tty"},
};

#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif
#define PL_NDEVICES (sizeof default_devices / sizeof default_devices[0])

/// Before pivot_root: detached clones of the host's device-node mounts (open_tree), which are
/// attached inside the container's nodev /dev afterwards. Device nodes then work only where
/// Propeller put them: a node the task makes with mknod sits on a nodev mount and cannot be
/// opened, whatever the cgroup device policy of the host.
static void clone_device_mounts(struct pl_spec *s, int fds[]) {
    for (size_t i = 0; i < PL_NDEVICES; i++) {
        fds[i] = (int)syscall(SYS_open_tree, AT_FDCWD, default_devices[i].path, OPEN_TREE_CLONE | O_CLOEXEC);
        if (fds[i] < 0) fail(s, PL_STAGE_MKNOD, default_devices[i].path);
    }
}

static void attach_device_mounts(struct pl_spec *s, const int fds[]) {
    for (size_t i = 0; i < PL_NDEVICES; i++) {
        const char *path = default_devices[i].path;
        int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0666);
        if (fd < 0) fail(s, PL_STAGE_MKNOD, path);
        close(fd);
        if (syscall(SYS_move_mount, fds[i], "", AT_FDCWD, path, MOVE_MOUNT_F_EMPTY_PATH) < 0) fail(s, PL_STAGE_MKNOD, path);
        close(fds[i]);
    }
}

#ifndef MOVE_MOUNT_T_EMPTY_PATH
#define MOVE_MOUNT_T_EMPTY_PATH 0x00000040
#endif
#ifndef MOUNT_ATTR_RDONLY
#define MOUNT_ATTR_RDONLY 0x00000001
#define MOUNT_ATTR_NOSUID 0x00000002
#define MOUNT_ATTR_NODEV 0x00000004
#endif
#ifndef MOUNT_ATTR_NOEXEC
#define MOUNT_ATTR_NOEXEC 0x00000008
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif

/// The kernel's struct mount_attr (Linux 5.12).
struct pl_mount_attr {
    uint64_t attr_set, attr_clr, propagation, userns_fd;
};

static int make_tmpfs(uint64_t size);

/// A secret's file: written into a new detached tmpfs (charged to the container's memory
/// cgroup, which the child is in by now), owned by the container's user, mode 0400; the file
/// alone is cloned out as a read-only, nosuid, nodev, noexec bind. Nothing of it is on a disk.
static int make_secret_file(struct pl_spec *s, const struct pl_mount *m) {
    int mfd = make_tmpfs((m->file_size / 4096 + 2) * 4096);
    if (mfd < 0) return -1;
    int f = openat(mfd, "value", O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0400);
    int ok = f >= 0;
    const char *p = m->file_data;
    size_t left = m->file_size;
    while (ok && left > 0) {
        ssize_t n = write(f, p, left);
        if (n < 0 && errno == EINTR) continue;
        ok = n > 0;
        if (ok) {
            p += n;
            left -= (size_t)n;
        }
    }
    ok = ok && fchown(f, s->uid, s->gid) == 0;
    int saved = errno;
    if (f >= 0) close(f);
    int file = ok ? (int)syscall(SYS_open_tree, mfd, "value", OPEN_TREE_CLONE | O_CLOEXEC) : -1;
    if (file < 0) saved = errno;
    close(mfd);
    if (file < 0) {
        errno = saved;
        return -1;
    }
    struct pl_mount_attr attr = {MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC, 0, MS_PRIVATE, 0};
    if (syscall(SYS_mount_setattr, file, "", AT_EMPTY_PATH, &attr, sizeof attr) < 0) {
        saved = errno;
        close(file);
        errno = saved;
        return -1;
    }
    return file;
}

/// Before pivot_root: a detached clone of each volume's source (only that mount, not the ones
/// below it), already nosuid, nodev, private and, when asked, read-only; a secret's file; -1
/// for a tmpfs.
static void clone_volume_mounts(struct pl_spec *s, int fds[]) {
    for (size_t i = 0; i < s->nmounts; i++) {
        const struct pl_mount *m = &s->mounts[i];
        fds[i] = -1;
        if (m->is_file) {
            fds[i] = make_secret_file(s, m);
            if (fds[i] < 0) fail(s, PL_STAGE_VOLUME, m->target);
            continue;
        }
        if (m->source == NULL) continue;
        fds[i] = (int)syscall(SYS_open_tree, AT_FDCWD, m->source, OPEN_TREE_CLONE | O_CLOEXEC);
        if (fds[i] < 0) fail(s, PL_STAGE_VOLUME, m->source);
        struct pl_mount_attr attr = {MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | (m->readonly ? MOUNT_ATTR_RDONLY : 0), 0, MS_PRIVATE, 0};
        if (syscall(SYS_mount_setattr, fds[i], "", AT_EMPTY_PATH, &attr, sizeof attr) < 0) fail(s, PL_STAGE_VOLUME, m->source);
    }
}

/// Decimal digits of `v` into `buf` (no stdio in the child).
static void u64_decimal(uint64_t v, char *buf, size_t cap) {
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0 && n < sizeof tmp);
    size_t i = 0;
    for (; i < n && i + 1 < cap; i++) buf[i] = tmp[n - 1 - i];
    buf[i] = '\0';
}

/// A new tmpfs (nosuid, nodev, mode 1777, `size` bytes at most when not 0), detached.
static int make_tmpfs(uint64_t size) {
    int fsfd = fsopen("tmpfs", FSOPEN_CLOEXEC);
    if (fsfd < 0) return -1;
    char digits[24];
    int ok = fsconfig(fsfd, FSCONFIG_SET_STRING, "mode", "1777", 0) == 0;
    if (ok && size > 0) {
        u64_decimal(size, digits, sizeof digits);
        ok = fsconfig(fsfd, FSCONFIG_SET_STRING, "size", digits, 0) == 0;
    }
    ok = ok && fsconfig(fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) == 0;
    int mfd = ok ? fsmount(fsfd, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV) : -1;
    int saved = errno;
    close(fsfd);
    errno = saved;
    return mfd;
}

/// After pivot_root: each volume and tmpfs attached at its target, resolved inside the
/// container's root and made when missing (a directory, or an empty file for a file's bind).
static void attach_volume_mounts(struct pl_spec *s, const int fds[]) {
    for (size_t i = 0; i < s->nmounts; i++) {
        const struct pl_mount *m = &s->mounts[i];
        struct stat st;
        int is_dir = fds[i] < 0 || (fstat(fds[i], &st) == 0 && S_ISDIR(st.st_mode));
        if (is_dir) {
            if (mkdir_all(m->target, 0755) < 0) fail(s, PL_STAGE_VOLUME, m->target);
        } else {
            // The parents, then the file itself (never through a symlink: O_NOFOLLOW).
            char parent[4096];
            size_t n = strlen(m->target);
            if (n >= sizeof parent) fail(s, PL_STAGE_VOLUME, m->target);
            memcpy(parent, m->target, n + 1);
            char *slash = strrchr(parent, '/');
            if (slash != NULL && slash != parent) {
                *slash = '\0';
                if (mkdir_all(parent, 0755) < 0) fail(s, PL_STAGE_VOLUME, m->target);
            }
            // O_NONBLOCK: a FIFO an image left there fails (ENXIO) instead of blocking the start.
            int f = open(m->target, O_CREAT | O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0644);
            if (f < 0 && errno != EISDIR && errno != ELOOP) fail(s, PL_STAGE_VOLUME, m->target);
            if (f >= 0) close(f);
        }
        int target = pl_open_in_root(AT_FDCWD, m->target, O_PATH | (is_dir ? O_DIRECTORY : 0));
        if (target < 0) fail(s, PL_STAGE_VOLUME, m->target);
        int source = fds[i] >= 0 ? fds[i] : make_tmpfs(m->tmpfs_size);
        if (source < 0) fail(s, PL_STAGE_VOLUME, m->target);
        if (syscall(SYS_move_mount, source, "", target, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
            fail(s, PL_STAGE_VOLUME, m->target);
        close(source);
        close(target);
    }
}

static void mount_defaults(struct pl_spec *s, const int device_fds[]) {
    ensure_dir(s, "/proc", 0555);
    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        fail(s, PL_STAGE_MOUNT_PROC, "/proc");

    ensure_dir(s, "/dev", 0755);
    if (mount("tmpfs", "/dev", "tmpfs", MS_NOSUID | MS_NODEV | MS_STRICTATIME, "mode=755,size=65536k") < 0)
        fail(s, PL_STAGE_MOUNT_DEV, "/dev");
    attach_device_mounts(s, device_fds);
    ensure_dir(s, "/dev/pts", 0755);
    if (mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5") < 0)
        fail(s, PL_STAGE_MOUNT_DEVPTS, "/dev/pts");
    static const char *const links[][2] = {
        {"pts/ptmx", "/dev/ptmx"},       {"/proc/self/fd", "/dev/fd"},     {"/proc/self/fd/0", "/dev/stdin"},
        {"/proc/self/fd/1", "/dev/stdout"}, {"/proc/self/fd/2", "/dev/stderr"}, {"/proc/kcore", "/dev/core"},
    };
    for (size_t i = 0; i < sizeof links / sizeof links[0]; i++) {
        if (symlink(links[i][0], links[i][1]) < 0) fail(s, PL_STAGE_SYMLINK, links[i][1]);
    }
    ensure_dir(s, "/dev/shm", 01777);
    if (mount("shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=65536k") < 0)
        fail(s, PL_STAGE_MOUNT_SHM, "/dev/shm");
    ensure_dir(s, "/dev/mqueue", 0755);
    if (mount("mqueue", "/dev/mqueue", "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        fail(s, PL_STAGE_MOUNT_MQUEUE, "/dev/mqueue");

    ensure_dir(s, "/sys", 0555);
    if (mount("sysfs", "/sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        fail(s, PL_STAGE_MOUNT_SYS, "/sys");

    for (size_t i = 0; i < s->nmasked_paths; i++) {
        const char *p = s->masked_paths[i];
        struct stat st;
        if (lstat(p, &st) < 0) {
            if (errno == ENOENT || errno == ENOTDIR) continue;
            fail(s, PL_STAGE_MASK_PATH, p);
        }
        int rc = S_ISDIR(st.st_mode) ? mount("tmpfs", p, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0")
                                     : mount("/dev/null", p, NULL, MS_BIND, NULL);
        if (rc < 0) fail(s, PL_STAGE_MASK_PATH, p);
    }
    for (size_t i = 0; i < s->nreadonly_paths; i++) {
        const char *p = s->readonly_paths[i];
        if (mount(p, p, NULL, MS_BIND | MS_REC, NULL) < 0) {
            if (errno == ENOENT) continue;
            fail(s, PL_STAGE_READONLY_PATH, p);
        }
        if (remount_readonly(p) < 0) fail(s, PL_STAGE_READONLY_PATH, p);
    }
}

/// Brings up "lo" in the caller's network namespace. Returns 0 or -1 with errno set.
static int loopback_up(void) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    memcpy(ifr.ifr_name, "lo", 3);
    int rc = ioctl(fd, SIOCGIFFLAGS, &ifr);
    if (rc == 0) {
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        rc = ioctl(fd, SIOCSIFFLAGS, &ifr);
    }
    int err = errno;
    close(fd);
    errno = err;
    return rc;
}

static void bring_up_loopback(struct pl_spec *s) {
    if (loopback_up() < 0) fail(s, PL_STAGE_LOOPBACK, "lo");
}

static void set_capabilities(struct pl_spec *s) {
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    uint64_t keep = s->caps_keep;
    data[0].effective = data[0].permitted = (uint32_t)(keep & 0xffffffffu);
    data[1].effective = data[1].permitted = (uint32_t)(keep >> 32);
    // Inheritable stays empty, as moby does since CVE-2022-24769.
    if (syscall(SYS_capset, &hdr, data) < 0) fail(s, PL_STAGE_CAPABILITIES, "capset");
}

static void exec_command(struct pl_spec *s) {
    const char *cmd = s->argv[0];
    if (cmd == NULL || cmd[0] == '\0') {
        errno = ENOENT;
        fail(s, PL_STAGE_EXEC, "");
    }
    if (strchr(cmd, '/') != NULL) {
        execve(cmd, s->argv, s->envp);
        fail(s, PL_STAGE_EXEC, cmd);
    }
    char buf[4096];
    size_t cmdlen = strlen(cmd);
    bool saw_eacces = false;
    int last = ENOENT;
    const char *p = s->search_path ? s->search_path : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    while (1) {
        const char *end = strchr(p, ':');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == 0) {
            buf[0] = '.';
            len = 1;
        } else if (len + 1 + cmdlen + 1 <= sizeof buf) {
            memcpy(buf, p, len);
        } else {
            len = 0;
        }
        if (len > 0 && len + 1 + cmdlen + 1 <= sizeof buf) {
            buf[len] = '/';
            memcpy(buf + len + 1, cmd, cmdlen + 1);
            execve(buf, s->argv, s->envp);
            if (errno == EACCES) saw_eacces = true;
            else if (errno != ENOENT && errno != ENOTDIR) last = errno;
        }
        if (end == NULL) break;
        p = end + 1;
    }
    errno = saw_eacces ? EACCES : last;
    fail(s, PL_STAGE_EXEC, cmd);
}

/// Signals arrive blocked (the parent blocked them around clone); every disposition goes back to
/// the default so nothing the parent caught or ignored (Swift ignores SIGPIPE) leaks into the child.
static void reset_signals(void) {
    for (int sig = 1; sig < NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP) continue;
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = SIG_DFL;
        (void)sigaction(sig, &sa, NULL);
    }
}

static void become_process(struct pl_spec *s);

static int child_main(void *arg) {
    struct pl_spec *s = arg;

    reset_signals();
    if ((s->flags & PL_KILL_WITH_PARENT) && prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
        fail(s, PL_STAGE_PARENT_DEATH, "PR_SET_PDEATHSIG");
    umask(0);
    // A session of its own, without a controlling terminal: in the caller's session the
    // container could type into the caller's shell with TIOCSTI on an inherited terminal, or
    // through /dev/tty (runc and crun do the same). Inside, /dev/tty then opens with ENXIO, and
    // TIOCSTI on an inherited terminal descriptor needs CAP_SYS_ADMIN, which tasks lack.
    if (setsid() < 0) fail(s, PL_STAGE_SESSION, "setsid");

    if (s->netns_fd >= 0 && setns(s->netns_fd, CLONE_NEWNET) < 0) fail(s, PL_STAGE_LOOPBACK, "join prepared network namespace");

    // Join the task's cgroups (unless it started in it), then make them the root of a new
    // cgroup namespace.
    for (size_t i = 0; i < s->ncgroup_fds && !s->joined_by_clone3; i++) {
        if (write(s->cgroup_fds[i], "0", 1) != 1) fail(s, PL_STAGE_JOIN_CGROUP, "cgroup.procs");
    }
    if (unshare(CLONE_NEWCGROUP) < 0) fail(s, PL_STAGE_UNSHARE_CGROUP, "");

    // Root filesystem: private mount tree, rootfs bound onto itself, pivot_root, old root detached.
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) fail(s, PL_STAGE_MOUNT_PRIVATE, "/");
    // An image's rootfs: its cached, shared lower directory under a private upper one, attached
    // in the container's own mount namespace, so it vanishes with the container. The parent has
    // usually mounted it already (detached, while it prepared the rest); else it is mounted here.
    if (s->overlay_fd >= 0) {
        if (syscall(SYS_move_mount, s->overlay_fd, "", AT_FDCWD, s->rootfs, MOVE_MOUNT_F_EMPTY_PATH) < 0)
            fail(s, PL_STAGE_BIND_ROOTFS, "overlay");
        close(s->overlay_fd);
    } else if (s->overlay_options != NULL && mount("overlay", s->rootfs, "overlay", MS_NOSUID, s->overlay_options) < 0) {
        fail(s, PL_STAGE_BIND_ROOTFS, "overlay");
    }
    // pivot_root wants a mount point: a directory is bound onto itself (an overlay already is one).
    if (s->overlay_fd < 0 && s->overlay_options == NULL && mount(s->rootfs, s->rootfs, NULL, MS_BIND | MS_REC, NULL) < 0)
        fail(s, PL_STAGE_BIND_ROOTFS, s->rootfs);
    int device_fds[PL_NDEVICES];
    clone_device_mounts(s, device_fds);
    int volume_fds[PL_MAX_MOUNTS];
    if (s->nmounts > PL_MAX_MOUNTS) {
        errno = E2BIG;
        fail(s, PL_STAGE_VOLUME, "too many mounts");
    }
    clone_volume_mounts(s, volume_fds);
    if (chdir(s->rootfs) < 0) fail(s, PL_STAGE_CHDIR_ROOTFS, s->rootfs);
    if (syscall(SYS_pivot_root, ".", ".") < 0) fail(s, PL_STAGE_PIVOT_ROOT, s->rootfs);
    if (umount2(".", MNT_DETACH) < 0) fail(s, PL_STAGE_DETACH_OLD_ROOT, s->rootfs);
    if (chdir("/") < 0) fail(s, PL_STAGE_CHDIR_ROOTFS, "/");

    // Everything below resolves paths inside the container: a hostile symlink cannot leave it.
    mount_defaults(s, device_fds);
    // Volumes go in while the rootfs is still writable (their mount points may need making)
    // and before the working directory, which may lie inside one.
    attach_volume_mounts(s, volume_fds);
    if (s->workdir != NULL && s->workdir[0] != '\0' && mkdir_all(s->workdir, 0755) < 0 && errno != EROFS)
        fail(s, PL_STAGE_WORKDIR, s->workdir);
    // The rootfs is nodev (device nodes in it, made by the task or shipped in an image, do not
    // open) and, with --read-only, read-only.
    unsigned long root_flags = MS_REMOUNT | MS_BIND | MS_NODEV | kept_mount_flags("/");
    if (s->flags & PL_READONLY_ROOT) root_flags |= MS_RDONLY;
    if (mount(NULL, "/", NULL, root_flags, NULL) < 0) fail(s, PL_STAGE_READONLY_ROOT, "/");

    if (s->hostname != NULL && sethostname(s->hostname, strlen(s->hostname)) < 0)
        fail(s, PL_STAGE_HOSTNAME, s->hostname);
    if ((s->flags & PL_NEW_NETWORK) && s->netns_fd < 0) bring_up_loopback(s);
    become_process(s);
    return 125;
}

/// The last steps of every start, in a launched container and in pl_exec alike: limits, working
/// directory, stdio, identity and capabilities, no_new_privs, descriptors, the seccomp filter,
/// exec. Never returns.
static void become_process(struct pl_spec *s) {
    for (size_t i = 0; i < s->nrlimits; i++) {
        struct rlimit rl = {(rlim_t)s->rlimits[i].soft, (rlim_t)s->rlimits[i].hard};
        if (setrlimit(s->rlimits[i].resource, &rl) < 0) fail(s, PL_STAGE_RLIMIT, "");
    }
    if (s->workdir != NULL && s->workdir[0] != '\0' && chdir(s->workdir) < 0) fail(s, PL_STAGE_WORKDIR, s->workdir);

    for (int i = 0; i < 3; i++) {
        int fd = s->stdio[i];
        if (fd < 0) continue;
        if (fd == i) {
            if (fcntl(i, F_SETFD, 0) < 0) fail(s, PL_STAGE_STDIO, "");
        } else if (dup2(fd, i) < 0) {
            fail(s, PL_STAGE_STDIO, "");
        }
    }
    // pl_exec with a terminal: it becomes the controlling terminal of the new session.
    if ((s->flags & PL_EXEC_TTY) && ioctl(0, TIOCSCTTY, 0) < 0) fail(s, PL_STAGE_TERMINAL, "TIOCSCTTY");

    // Capabilities: shrink the bounding set while we still hold CAP_SETPCAP, change identity
    // keeping permitted caps, then set the final permitted/effective sets.
    for (int cap = 0; cap <= s->cap_last; cap++) {
        if (cap < 64 && (s->caps_keep & ((uint64_t)1 << cap))) continue;
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL) fail(s, PL_STAGE_CAPABILITIES, "bounding set");
    }
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        fail(s, PL_STAGE_CAPABILITIES, "ambient set");
    if (syscall(SYS_setgroups, s->ngroups, s->groups) < 0) fail(s, PL_STAGE_SETGROUPS, "");
    if (syscall(SYS_setresgid, s->gid, s->gid, s->gid) < 0) fail(s, PL_STAGE_SETGID, "");
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0) fail(s, PL_STAGE_SETUID, "PR_SET_KEEPCAPS");
    if (syscall(SYS_setresuid, s->uid, s->uid, s->uid) < 0) fail(s, PL_STAGE_SETUID, "");
    set_capabilities(s);
    // The kernel clears the parent-death signal when the effective uid or gid changes: without
    // setting it again, a task running as a non-root user outlived a killed proplet or CLI.
    if ((s->flags & PL_KILL_WITH_PARENT) && prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
        fail(s, PL_STAGE_PARENT_DEATH, "PR_SET_PDEATHSIG");
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) fail(s, PL_STAGE_NO_NEW_PRIVS, "");

    // Nothing but 0, 1 and 2 survives exec.
    if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) < 0) {
        struct rlimit rl;
        rlim_t top = (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) ? rl.rlim_cur : 65536;
        for (rlim_t fd = 3; fd < top; fd++) (void)fcntl((int)fd, F_SETFD, FD_CLOEXEC);
    }
    umask(022);

    sigset_t none;
    sigemptyset(&none);
    if (sigprocmask(SIG_SETMASK, &none, NULL) < 0) fail(s, PL_STAGE_SIGNALS, "");

    // Last: the seccomp filter, then exec.
    if (s->seccomp_prog != NULL && prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, s->seccomp_prog, 0, 0) < 0)
        fail(s, PL_STAGE_SECCOMP, "");
    exec_command(s);
}

/// clone3(2) arguments, as the kernel defines them (struct clone_args, version 2 with `cgroup`).
struct pl_clone_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size, cgroup;
};

#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
#ifndef SYS_clone3
#define SYS_clone3 435
#endif

/// clone3 with CLONE_VM and a stack of its own: the child runs `fn(arg)` on that stack and exits
/// with its result; it never returns into this function's frame (the parent's stack, which it
/// shares). The same trampoline as glibc's internal __clone3, which glibc does not export.
/// Returns the child's pid, or -errno.
static long clone3_run(struct pl_clone_args *args, int (*fn)(void *), void *arg) {
#if defined(__x86_64__)
    long ret;
    register void *r12 __asm__("r12") = (void *)fn;
    register void *r13 __asm__("r13") = arg;
    __asm__ volatile(
        "syscall\n\t"
        "test %%rax, %%rax\n\t"
        "jnz 1f\n\t"
        "xor %%ebp, %%ebp\n\t"  // the child: a fresh stack (16-byte aligned by the caller), no frame above
        "mov %%r13, %%rdi\n\t"
        "call *%%r12\n\t"
        "mov %%eax, %%edi\n\t"
        "mov $60, %%eax\n\t"    // SYS_exit
        "syscall\n\t"
        "hlt\n"
        "1:"
        : "=a"(ret)
        : "a"((long)SYS_clone3), "D"(args), "S"(sizeof *args), "r"(r12), "r"(r13)
        : "rcx", "r11", "memory");
    return ret;
#elif defined(__aarch64__)
    register long x0 __asm__("x0") = (long)args;
    register long x1 __asm__("x1") = (long)sizeof *args;
    register long x8 __asm__("x8") = SYS_clone3;
    register void *x19 __asm__("x19") = (void *)fn;
    register void *x20 __asm__("x20") = arg;
    __asm__ volatile(
        "svc #0\n\t"
        "cbnz x0, 1f\n\t"
        "mov x29, #0\n\t"
        "mov x0, x20\n\t"
        "blr x19\n\t"
        "mov x8, #93\n\t"     // SYS_exit
        "svc #0\n"
        "1:"
        : "+r"(x0)
        : "r"(x1), "r"(x8), "r"(x19), "r"(x20)
        : "x30", "memory");
    return x0;
#else
    (void)args; (void)fn; (void)arg;
    return -ENOSYS;
#endif
}

/// Set once clone3 or CLONE_INTO_CGROUP turned out missing (an old kernel, or a seccomp filter
/// around this process that refuses clone3 with ENOSYS, as container engines' defaults do).
static int clone3_unsupported;

pid_t pl_launch(struct pl_spec *s, int *pidfd) {
    s->err_stage = PL_STAGE_NONE;
    s->err_errno = 0;
    s->err_detail[0] = '\0';
    s->joined_by_clone3 = 0;
    int flags = CLONE_VM | CLONE_VFORK | CLONE_PIDFD | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC;
    if ((s->flags & PL_NEW_NETWORK) && s->netns_fd < 0) flags |= CLONE_NEWNET;

    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    *pidfd = -1;
    pid_t pid = -1;
    int saved = 0;
    if (s->cgroup_dir_fd >= 0 && !__atomic_load_n(&clone3_unsupported, __ATOMIC_RELAXED)) {
        // Started in its cgroup: no cgroup.procs write, which takes the kernel's threadgroup
        // lock and waits for an RCU grace period.
        struct pl_clone_args args = {
            .flags = (uint64_t)flags | CLONE_INTO_CGROUP,
            .pidfd = (uint64_t)(uintptr_t)pidfd,
            .exit_signal = SIGCHLD,
            .stack = (uint64_t)(uintptr_t)s->stack,
            .stack_size = s->stack_size,
            .cgroup = (uint64_t)s->cgroup_dir_fd,
        };
        s->joined_by_clone3 = 1;
        long r = clone3_run(&args, child_main, s);
        if (r >= 0) {
            pid = (pid_t)r;
        } else {
            s->joined_by_clone3 = 0;
            *pidfd = -1;
            if (r == -ENOSYS || r == -E2BIG) __atomic_store_n(&clone3_unsupported, 1, __ATOMIC_RELAXED);
        }
    }
    if (pid < 0) {
        pid = clone(child_main, (char *)s->stack + s->stack_size, flags | SIGCHLD, s, pidfd);
        saved = errno;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (pid < 0) {
        s->err_stage = PL_STAGE_CLONE;
        s->err_errno = saved;
        return -1;
    }
    return pid;
}

/// pl_exec's process, started by the helper inside the container's pid namespace: it joins the
/// container's cgroup namespace last (after its cgroup, which the host's view names), then
/// becomes the task's process.
static int exec_process_main(void *arg) {
    struct pl_spec *s = arg;
    reset_signals();
    if ((s->flags & PL_KILL_WITH_PARENT) && prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
        fail(s, PL_STAGE_PARENT_DEATH, "PR_SET_PDEATHSIG");
    for (size_t i = 0; i < s->ncgroup_fds && !s->joined_by_clone3; i++) {
        if (write(s->cgroup_fds[i], "0", 1) != 1) fail(s, PL_STAGE_JOIN_CGROUP, "cgroup.procs");
    }
    if (setns(s->exec_target_pidfd, CLONE_NEWCGROUP) < 0) fail(s, PL_STAGE_JOIN_NAMESPACES, "cgroup");
    // A session of its own (see child_main); with a terminal, that terminal becomes its controlling one.
    if (setsid() < 0) fail(s, PL_STAGE_SESSION, "setsid");
    umask(0);
    become_process(s);
    return 125;
}

/// pl_exec's helper: shares the caller's memory and descriptor table (the new process's pidfd
/// lands in the caller's), not its filesystem context, so it may join a mount namespace.
static int exec_helper_main(void *arg) {
    struct pl_spec *s = arg;
    if (setns(s->exec_target_pidfd, CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWPID) < 0)
        fail(s, PL_STAGE_JOIN_NAMESPACES, "mnt, uts, ipc, net, pid");
    // Joining the mount namespace put the root at that namespace's first mount; the container's
    // root is the directory its PID 1 pivoted into.
    if (fchdir(s->exec_root_fd) < 0 || chroot(".") < 0 || chdir("/") < 0) fail(s, PL_STAGE_CHDIR_ROOTFS, "the container's root");
    size_t half = s->stack_size / 2;
    void *stack = (char *)s->stack + half;
    int flags = CLONE_VM | CLONE_VFORK | CLONE_PARENT | CLONE_PIDFD;
    pid_t pid = -1;
    if (s->cgroup_dir_fd >= 0 && !__atomic_load_n(&clone3_unsupported, __ATOMIC_RELAXED)) {
        struct pl_clone_args args = {
            .flags = (uint64_t)flags | CLONE_INTO_CGROUP,
            .pidfd = (uint64_t)(uintptr_t)&s->exec_pidfd,
            .exit_signal = SIGCHLD,
            .stack = (uint64_t)(uintptr_t)stack,
            .stack_size = half,
            .cgroup = (uint64_t)s->cgroup_dir_fd,
        };
        s->joined_by_clone3 = 1;
        long r = clone3_run(&args, exec_process_main, s);
        if (r >= 0) {
            pid = (pid_t)r;
        } else {
            s->joined_by_clone3 = 0;
            s->exec_pidfd = -1;
            if (r == -ENOSYS || r == -E2BIG) __atomic_store_n(&clone3_unsupported, 1, __ATOMIC_RELAXED);
        }
    }
    if (pid < 0) pid = clone(exec_process_main, (char *)stack + half, flags, s, &s->exec_pidfd);
    if (pid < 0) fail(s, PL_STAGE_CLONE, "the process in the container");
    s->exec_pid = pid;
    return 0;
}

pid_t pl_exec(struct pl_spec *s, int *pidfd) {
    s->err_stage = PL_STAGE_NONE;
    s->err_errno = 0;
    s->err_detail[0] = '\0';
    s->joined_by_clone3 = 0;
    s->exec_pid = -1;
    s->exec_pidfd = -1;
    *pidfd = -1;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    // The helper runs on the stack's lower half, the process on the upper one.
    pid_t helper = clone(exec_helper_main, (char *)s->stack + s->stack_size / 2, CLONE_VM | CLONE_VFORK | CLONE_FILES | SIGCHLD, s);
    int saved = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (helper < 0) {
        s->err_stage = PL_STAGE_CLONE;
        s->err_errno = saved;
        return -1;
    }
    int status = 0;
    while (waitpid(helper, &status, __WALL) < 0 && errno == EINTR) {}
    if (s->exec_pid > 0) *pidfd = s->exec_pidfd;
    else if (s->err_stage == PL_STAGE_NONE) {
        s->err_stage = PL_STAGE_CLONE;
        s->err_errno = ECHILD;
    }
    return s->exec_pid;
}

int pl_get_window_size(int fd, unsigned short *rows, unsigned short *cols) {
    struct winsize ws;
    if (ioctl(fd, TIOCGWINSZ, &ws) < 0) return -1;
    *rows = ws.ws_row;
    *cols = ws.ws_col;
    return 0;
}

int pl_set_window_size(int fd, unsigned short rows, unsigned short cols) {
    struct winsize ws = {.ws_row = rows, .ws_col = cols};
    return ioctl(fd, TIOCSWINSZ, &ws);
}

int pl_openpty(int *leader, int *follower, unsigned short rows, unsigned short cols) {
    int l = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (l < 0) return -1;
    char name[128];
    if (grantpt(l) < 0 || unlockpt(l) < 0 || ptsname_r(l, name, sizeof name) != 0) goto fail;
    int f = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (f < 0) goto fail;
    if ((rows || cols) && pl_set_window_size(l, rows, cols) < 0) {
        int err = errno;
        close(f);
        errno = err;
        goto fail;
    }
    *leader = l;
    *follower = f;
    return 0;
fail:;
    int err = errno;
    close(l);
    errno = err;
    return -1;
}

/// Copies "step: kernel message" (the message read from the fs context, when there is one) into `what`.
static void overlay_failure(int fsfd, const char *step, char *what, size_t what_size) {
    int err = errno;
    size_t at = bounded_copy(what, what_size, 0, step);
    char msg[256];
    ssize_t n = fsfd >= 0 ? read(fsfd, msg, sizeof msg - 1) : -1;
    if (n > 2) {
        msg[n] = '\0';
        if (msg[n - 1] == '\n') msg[n - 1] = '\0';
        at = bounded_copy(what, what_size, at, ": ");
        bounded_copy(what, what_size, at, msg + 2); // "e overlayfs: ..." -> "overlayfs: ..."
    }
    if (fsfd >= 0) close(fsfd);
    errno = err;
}

int pl_overlay_mount(const char *lower, const char *upper, const char *work, int drop_volatile_marker, char *what, size_t what_size) {
    what[0] = '\0';
    int fsfd = fsopen("overlay", FSOPEN_CLOEXEC);
    if (fsfd < 0) {
        overlay_failure(-1, "fsopen overlay", what, what_size);
        return -1;
    }
    static const char *const keys[] = {"lowerdir", "upperdir", "workdir"};
    const char *values[] = {lower, upper, work};
    for (size_t i = 0; i < 3; i++) {
        if (fsconfig(fsfd, FSCONFIG_SET_STRING, keys[i], values[i], 0) < 0) {
            overlay_failure(fsfd, keys[i], what, what_size);
            return -1;
        }
    }
    // volatile: the upper layer is not synced at unmount; it is discarded with the run anyway.
    if (fsconfig(fsfd, FSCONFIG_SET_FLAG, "volatile", NULL, 0) < 0) {
        overlay_failure(fsfd, "volatile", what, what_size);
        return -1;
    }
    if (fsconfig(fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0) {
        overlay_failure(fsfd, "create", what, what_size);
        return -1;
    }
    int mfd = fsmount(fsfd, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID);
    if (mfd < 0) {
        overlay_failure(fsfd, "fsmount", what, what_size);
        return -1;
    }
    close(fsfd);
    if (!drop_volatile_marker) return mfd;
    // overlayfs leaves work/work/incompat/volatile/dirty behind a volatile mount so that the
    // layers are never mounted again after a crash; it reads it only when mounting. These
    // layers never are, so it goes now rather than after the run (best effort: RunDirectory
    // removes whatever is left).
    char path[4096];
    static const char *const marker[] = {"/work/incompat/volatile/dirty", "/work/incompat/volatile", "/work/incompat"};
    for (size_t i = 0; i < 3; i++) {
        size_t at = bounded_copy(path, sizeof path, 0, work);
        bounded_copy(path, sizeof path, at, marker[i]);
        (void)(i == 0 ? unlink(path) : rmdir(path));
    }
    return mfd;
}

/// Makes `upper` and `work` in the directory `dirfd`: the upper layer's root is the container's
/// "/", so it takes the mode and owner of `like`, the image's root (fchmodat too, as mkdirat
/// applies the umask).
static int make_scratch_layers(int dirfd, const char *like, char *what, size_t what_size) {
    struct stat root;
    if (stat(like, &root) < 0) {
        overlay_failure(-1, "stat lower layer", what, what_size);
        return -1;
    }
    mode_t mode = root.st_mode & 07777;
    if (mkdirat(dirfd, "upper", mode) < 0 || fchmodat(dirfd, "upper", mode, 0) < 0 ||
        fchownat(dirfd, "upper", root.st_uid, root.st_gid, AT_SYMLINK_NOFOLLOW) < 0) {
        overlay_failure(-1, "create upper layer", what, what_size);
        return -1;
    }
    if (mkdirat(dirfd, "work", 0700) < 0) {
        overlay_failure(-1, "create work directory", what, what_size);
        return -1;
    }
    return 0;
}

int pl_scratch_mount(unsigned long long size_bytes, const char *like, char *what, size_t what_size) {
    what[0] = '\0';
    int fsfd = fsopen("tmpfs", FSOPEN_CLOEXEC);
    if (fsfd < 0) {
        overlay_failure(-1, "fsopen tmpfs", what, what_size);
        return -1;
    }
    char size[32];
    snprintf(size, sizeof size, "%llu", size_bytes);
    // mode 0700: the tmpfs's own root is never seen by the container, only the overlay.
    if ((size_bytes > 0 && fsconfig(fsfd, FSCONFIG_SET_STRING, "size", size, 0) < 0) ||
        fsconfig(fsfd, FSCONFIG_SET_STRING, "mode", "0700", 0) < 0) {
        overlay_failure(fsfd, "tmpfs options", what, what_size);
        return -1;
    }
    if (fsconfig(fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0) {
        overlay_failure(fsfd, "create tmpfs", what, what_size);
        return -1;
    }
    int mfd = fsmount(fsfd, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
    if (mfd < 0) {
        overlay_failure(fsfd, "fsmount tmpfs", what, what_size);
        return -1;
    }
    close(fsfd);
    if (make_scratch_layers(mfd, like, what, what_size) < 0) {
        int err = errno;
        close(mfd);
        errno = err;
        return -1;
    }
    return mfd;
}

struct private_scratch {
    const char *lower, *like, *mountpoint;
    unsigned long long size_bytes;
    char *what;
    size_t what_size;
    int fd, err;
};

/// The thread of pl_scratch_overlay_private: it lives in a mount namespace of its own, so
/// the tmpfs it mounts is a mount of its current namespace (which older kernels require of an
/// overlay layer) without being seen anywhere else. The namespace goes when the thread exits;
/// the overlay keeps its own private clone of the tmpfs.
static void *private_scratch_main(void *p) {
    struct private_scratch *ps = p;
    ps->fd = -1;
    if (unshare(CLONE_NEWNS | CLONE_FS) < 0) {
        overlay_failure(-1, "unshare mount namespace", ps->what, ps->what_size);
    } else if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
        overlay_failure(-1, "make mounts private", ps->what, ps->what_size);
    } else {
        char opts[64];
        if (ps->size_bytes > 0) snprintf(opts, sizeof opts, "mode=0700,size=%llu", ps->size_bytes);
        else snprintf(opts, sizeof opts, "mode=0700");
        int dirfd = -1;
        if (mount("tmpfs", ps->mountpoint, "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0) {
            overlay_failure(-1, "mount tmpfs", ps->what, ps->what_size);
        } else if ((dirfd = open(ps->mountpoint, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0) {
            overlay_failure(-1, "open tmpfs", ps->what, ps->what_size);
        } else if (make_scratch_layers(dirfd, ps->like, ps->what, ps->what_size) == 0) {
            char upper[4096], work[4096];
            bounded_copy(upper, sizeof upper, bounded_copy(upper, sizeof upper, 0, ps->mountpoint), "/upper");
            bounded_copy(work, sizeof work, bounded_copy(work, sizeof work, 0, ps->mountpoint), "/work");
            ps->fd = pl_overlay_mount(ps->lower, upper, work, 0, ps->what, ps->what_size);
        }
        if (dirfd >= 0) close(dirfd);
    }
    ps->err = ps->fd < 0 ? errno : 0;
    return NULL;
}

int pl_scratch_overlay_private(const char *lower, unsigned long long size_bytes, const char *like, const char *mountpoint,
                               char *what, size_t what_size) {
    what[0] = '\0';
    struct private_scratch ps = {lower, like, mountpoint, size_bytes, what, what_size, -1, 0};
    pthread_t thread;
    int rc = pthread_create(&thread, NULL, private_scratch_main, &ps);
    if (rc != 0) {
        errno = rc;
        overlay_failure(-1, "start thread", what, what_size);
        return -1;
    }
    pthread_join(thread, NULL);
    errno = ps.err;
    return ps.fd;
}

const char *pl_stage_name(int stage) {
    switch (stage) {
    case PL_STAGE_NONE: return "none";
    case PL_STAGE_CLONE: return "clone";
    case PL_STAGE_SIGNALS: return "reset signals";
    case PL_STAGE_JOIN_CGROUP: return "join cgroup";
    case PL_STAGE_UNSHARE_CGROUP: return "new cgroup namespace";
    case PL_STAGE_MOUNT_PRIVATE: return "make mounts private";
    case PL_STAGE_BIND_ROOTFS: return "bind rootfs";
    case PL_STAGE_CHDIR_ROOTFS: return "enter rootfs";
    case PL_STAGE_PIVOT_ROOT: return "pivot_root into";
    case PL_STAGE_DETACH_OLD_ROOT: return "detach old root of";
    case PL_STAGE_MKDIR: return "create mount point";
    case PL_STAGE_MOUNT_PROC: return "mount proc on";
    case PL_STAGE_MOUNT_DEV: return "mount tmpfs on";
    case PL_STAGE_MKNOD: return "set up device";
    case PL_STAGE_SYMLINK: return "create symlink";
    case PL_STAGE_MOUNT_DEVPTS: return "mount devpts on";
    case PL_STAGE_MOUNT_SHM: return "mount shm on";
    case PL_STAGE_MOUNT_MQUEUE: return "mount mqueue on";
    case PL_STAGE_MOUNT_SYS: return "mount sysfs on";
    case PL_STAGE_MASK_PATH: return "mask path";
    case PL_STAGE_READONLY_PATH: return "make read-only";
    case PL_STAGE_READONLY_ROOT: return "remount rootfs";
    case PL_STAGE_HOSTNAME: return "set hostname";
    case PL_STAGE_LOOPBACK: return "bring up loopback";
    case PL_STAGE_RLIMIT: return "set rlimit";
    case PL_STAGE_WORKDIR: return "enter working directory";
    case PL_STAGE_STDIO: return "set up stdio";
    case PL_STAGE_SETGROUPS: return "set supplementary groups";
    case PL_STAGE_SETGID: return "set gid";
    case PL_STAGE_SETUID: return "set uid";
    case PL_STAGE_CAPABILITIES: return "set capabilities";
    case PL_STAGE_NO_NEW_PRIVS: return "set no_new_privs";
    case PL_STAGE_CLOSE_FDS: return "close inherited descriptors";
    case PL_STAGE_SECCOMP: return "load seccomp filter";
    case PL_STAGE_EXEC: return "exec";
    case PL_STAGE_PARENT_DEATH: return "set parent-death signal";
    case PL_STAGE_SESSION: return "start a new session";
    case PL_STAGE_VOLUME: return "mount a volume";
    case PL_STAGE_JOIN_NAMESPACES: return "join the container's namespaces";
    case PL_STAGE_TERMINAL: return "take the terminal";
    default: return "unknown stage";
    }
}

const char *pl_errno_name(int err) { return strerrorname_np(err); }

int pl_open_in_root(int rootfd, const char *path, int flags) {
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = (uint64_t)(flags | O_CLOEXEC);
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    return (int)syscall(SYS_openat2, rootfd, path, &how, sizeof how);
}

static int signal_pipe_write = -1;

static void forward_to_pipe(int sig) {
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    if (signal_pipe_write >= 0) (void)!write(signal_pipe_write, &b, 1);
    errno = saved;
}

int pl_signal_pipe(const int *signals, size_t count) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) < 0) return -1;
    signal_pipe_write = fds[1];
    // A parent may have started us with these signals blocked; a handler would then never run.
    sigset_t unblock;
    sigemptyset(&unblock);
    for (size_t i = 0; i < count; i++) sigaddset(&unblock, signals[i]);
    pthread_sigmask(SIG_UNBLOCK, &unblock, NULL);
    for (size_t i = 0; i < count; i++) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = forward_to_pipe;
        sa.sa_flags = SA_RESTART;
        sigemptyset(&sa.sa_mask);
        if (sigaction(signals[i], &sa, NULL) < 0) return -1;
    }
    return fds[0];
}

int pl_wait_readable(int pidfd, int extra_fd, int timeout_ms) {
    struct pollfd p[2] = {{pidfd, POLLIN, 0}, {extra_fd, POLLIN, 0}};
    nfds_t n = extra_fd >= 0 ? 2 : 1;
    for (;;) {
        int rc = poll(p, n, timeout_ms);
        if (rc < 0 && errno == EINTR) continue;
        if (rc < 0) return -1;
        if (rc == 0) return 0;
        if (p[0].revents) return 1;
        return 2;
    }
}

int pl_memfd(const char *name) { return memfd_create(name, MFD_CLOEXEC); }

int pl_pidfd_signal(int pidfd, int sig) { return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0); }

int pl_netns_create(void) {
    int orig = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (orig < 0) return -1;
    if (unshare(CLONE_NEWNET) < 0) {
        int err = errno;
        close(orig);
        errno = err;
        return -1;
    }
    int fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    int err = errno;
    if (fd >= 0 && loopback_up() < 0) {
        err = errno;
        close(fd);
        fd = -1;
    }
    // This thread must not stay in the new namespace: every later socket it opened would be there.
    if (setns(orig, CLONE_NEWNET) < 0) abort();
    close(orig);
    errno = err;
    return fd;
}

int pl_pipe_cloexec(int fds[2]) {
    return pipe2(fds, O_CLOEXEC);
}
