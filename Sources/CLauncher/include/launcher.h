// The container launcher: everything a freshly cloned child does before execve.
//
// The parent (Swift) prepares every string, array, file descriptor and the seccomp BPF program
// in a `pl_spec`, then calls `pl_launch`. The child runs on its own stack in the parent's address
// space (CLONE_VM|CLONE_VFORK, like posix_spawn) and only makes system calls: no malloc, no locks,
// no Swift. It reports a failure by filling `err_*` in the spec and exiting; the parent resumes
// once the child has either exec'd or exited, so the error fields are final when pl_launch returns.
#ifndef PROPELLER_LAUNCHER_H
#define PROPELLER_LAUNCHER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Which step of container setup failed (reported back to the parent).
enum pl_stage {
    PL_STAGE_NONE = 0,
    PL_STAGE_CLONE,
    PL_STAGE_SIGNALS,
    PL_STAGE_JOIN_CGROUP,
    PL_STAGE_UNSHARE_CGROUP,
    PL_STAGE_MOUNT_PRIVATE,
    PL_STAGE_BIND_ROOTFS,
    PL_STAGE_CHDIR_ROOTFS,
    PL_STAGE_PIVOT_ROOT,
    PL_STAGE_DETACH_OLD_ROOT,
    PL_STAGE_MKDIR,
    PL_STAGE_MOUNT_PROC,
    PL_STAGE_MOUNT_DEV,
    PL_STAGE_MKNOD,
    PL_STAGE_SYMLINK,
    PL_STAGE_MOUNT_DEVPTS,
    PL_STAGE_MOUNT_SHM,
    PL_STAGE_MOUNT_MQUEUE,
    PL_STAGE_MOUNT_SYS,
    PL_STAGE_MASK_PATH,
    PL_STAGE_READONLY_PATH,
    PL_STAGE_READONLY_ROOT,  ///< remounting the rootfs nodev (and read-only when asked)
    PL_STAGE_HOSTNAME,
    PL_STAGE_LOOPBACK,
    PL_STAGE_RLIMIT,
    PL_STAGE_WORKDIR,
    PL_STAGE_STDIO,
    PL_STAGE_SETGROUPS,
    PL_STAGE_SETGID,
    PL_STAGE_SETUID,
    PL_STAGE_CAPABILITIES,
    PL_STAGE_NO_NEW_PRIVS,
    PL_STAGE_CLOSE_FDS,
    PL_STAGE_SECCOMP,
    PL_STAGE_EXEC,
    PL_STAGE_PARENT_DEATH,
    PL_STAGE_SESSION,  ///< setsid: a session of its own, no controlling terminal
    PL_STAGE_VOLUME,   ///< a volume or tmpfs mounted into the container
    PL_STAGE_JOIN_NAMESPACES, ///< pl_exec: setns into a running container's namespaces
    PL_STAGE_TERMINAL, ///< pl_exec: the terminal made the controlling one (TIOCSCTTY)
};

/// Flags for `pl_spec.flags`.
enum {
    PL_NEW_NETWORK = 1 << 0,   ///< new network namespace with only loopback, brought up
    PL_READONLY_ROOT = 1 << 1, ///< remount the rootfs read-only after setup
    PL_KILL_WITH_PARENT = 1 << 2, ///< SIGKILL the container when the launching thread dies
    PL_EXEC_TTY = 1 << 3,      ///< pl_exec: stdin is a terminal, made the process's controlling one
};

/// Same layout as the kernel's `struct sock_fprog`: a compiled seccomp BPF program.
struct pl_bpf_program {
    unsigned short len;
    void *filter;
};

struct pl_rlimit {
    int resource;
    uint64_t soft;
    uint64_t hard;
};

/// At most this many volumes and tmpfs mounts per container (the child has no heap).
#define PL_MAX_MOUNTS 64

/// A volume or tmpfs mounted into the container. The source is cloned (open_tree) before
/// pivot_root, while host paths still resolve; the target is resolved after it, inside the
/// container's root (openat2 RESOLVE_IN_ROOT), so no symlink in the image can point it at the host.
struct pl_mount {
    const char *source;              ///< host path of a bind mount; NULL: a new tmpfs
    const char *target;              ///< absolute path inside the container, made when missing
    uint64_t tmpfs_size;             ///< a tmpfs's size limit in bytes; 0: the kernel's default
    int readonly;                    ///< mounted read-only
    int is_file;                     ///< with source NULL: a file of `file_data` on a tmpfs of its own,
                                     ///< owned by the container's uid/gid, mode 0400, bound read-only (a secret)
    const void *file_data;
    size_t file_size;
};

struct pl_spec {
    // Inputs, all prepared by the parent and owned by it.
    const char *rootfs;              ///< absolute host path of the root filesystem
    int overlay_fd;                  ///< a detached overlay (pl_overlay_mount) to attach on rootfs first; -1: none
    const char *overlay_options;     ///< else, if set, mount overlayfs with these options on rootfs first
    char *const *argv;               ///< NULL-terminated; argv[0] is the command
    char *const *envp;               ///< NULL-terminated
    const char *search_path;         ///< PATH used to find argv[0] when it has no '/'
    const char *workdir;             ///< absolute path inside the container, created when missing
    const char *hostname;
    uid_t uid;
    gid_t gid;
    const gid_t *groups;
    size_t ngroups;
    uint64_t caps_keep;              ///< bit i set: capability i stays in bounding/permitted/effective
    int cap_last;                    ///< highest capability the kernel knows (/proc/sys/kernel/cap_last_cap)
    const struct pl_rlimit *rlimits;
    size_t nrlimits;
    const int *cgroup_fds;           ///< open cgroup.procs files of the task's cgroups; the child writes "0"
    size_t ncgroup_fds;
    int cgroup_dir_fd;               ///< the task's cgroup v2 directory: the child starts in it
                                     ///< (clone3 CLONE_INTO_CGROUP, Linux 5.7+) and writes no
                                     ///< cgroup.procs; -1, or a kernel without it: cgroup_fds
    const struct pl_bpf_program *seccomp_prog; ///< NULL for unconfined
    const char *const *masked_paths;
    size_t nmasked_paths;
    const char *const *readonly_paths;
    size_t nreadonly_paths;
    int flags;
    int netns_fd;                    ///< a prepared network namespace to join (-1: PL_NEW_NETWORK makes one)
    const struct pl_mount *mounts;   ///< volumes and tmpfs mounts, in order (a later one may sit inside an earlier one)
    size_t nmounts;                  ///< at most PL_MAX_MOUNTS
    int stdio[3];                    ///< descriptors that become 0, 1, 2 (-1: inherit the parent's)
    void *stack;                     ///< child stack prepared by the parent
    size_t stack_size;

    // pl_exec only: the running container to enter.
    int exec_target_pidfd;           ///< a pidfd of the container's PID 1: its namespaces are joined
    int exec_root_fd;                ///< its root directory (/proc/PID/root, opened), the new process's root
    pid_t exec_pid;                  ///< out: the new process (the caller's child), -1 when none started
    int exec_pidfd;                  ///< out: its pidfd

    // Outputs. `joined_by_clone3`: the child started in cgroup_dir_fd (written by the parent
    // before the child runs, read by the child: they share memory). The rest are written by the
    // child when setup fails.
    int joined_by_clone3;
    int err_stage;
    int err_errno;
    char err_detail[512];
};

/// Starts the container described by `spec`. Returns the child's pid (in the caller's pid
/// namespace) and stores a pidfd in `*pidfd`, or returns -1 with `spec->err_stage`/`err_errno`
/// set. A positive pid with `spec->err_stage != PL_STAGE_NONE` means the child failed during
/// setup and has exited; the caller must still reap it.
pid_t pl_launch(struct pl_spec *spec, int *pidfd);

/// Mounts an overlayfs of `lower` (':'-separated, top first) under `upper` and `work` (which
/// must exist), attached nowhere yet (fsopen/fsmount): nosuid, `volatile`. Returns the
/// mount's descriptor (close-on-exec) for `pl_spec.overlay_fd`, or -1 with errno set and `what`
/// holding the failed step and the kernel's own message when it gave one. ENOSYS: this kernel
/// has no mount API (before 5.2); mount with `overlay_options` instead. `drop_volatile_marker`:
/// remove the marker a volatile mount leaves in `work` (pointless when `work` is on a scratch
/// tmpfs that goes with the run).
int pl_overlay_mount(const char *lower, const char *upper, const char *work, int drop_volatile_marker, char *what, size_t what_size);

/// Makes a private tmpfs for an overlay's writable layer, attached nowhere (fsopen/fsmount,
/// nosuid, nodev): `upper` (with the mode and owner of the directory `like`, the image's root)
/// and `work` at its root. At most `size_bytes` (0: the tmpfs default, half the RAM); its pages
/// are charged to the memory cgroup of whoever writes them. Returns the mount's descriptor
/// (close-on-exec; the tmpfs lives while it or an overlay on it does), or -1 with errno set
/// and `what` holding the failed step.
int pl_scratch_mount(unsigned long long size_bytes, const char *like, char *what, size_t what_size);

/// The same scratch tmpfs for kernels that refuse a detached mount as an overlay layer (6.1
/// does): a thread of its own unshares its mount namespace (made private), mounts the tmpfs on
/// `mountpoint` there, makes `upper` and `work` and mounts the overlay detached; the namespace
/// goes with the thread, seen by no one. Returns the overlay's descriptor, or -1 with errno set
/// and `what` holding the failed step.
int pl_scratch_overlay_private(const char *lower, unsigned long long size_bytes, const char *like, const char *mountpoint,
                               char *what, size_t what_size);

/// Starts a process inside the running container that `spec->exec_target_pidfd` leads (its
/// PID 1): in its mount, pid, uts, ipc, network and cgroup namespaces, its cgroup (cgroup_dir_fd or
/// cgroup_fds), rooted at `exec_root_fd`, then the same identity, capabilities, rlimits,
/// no_new_privs and seccomp filter as a launched container (the `pl_spec` fields it uses: argv,
/// envp, search_path, workdir, uid, gid, groups, caps_keep, cap_last, rlimits, seccomp_prog,
/// stdio, flags PL_KILL_WITH_PARENT and PL_EXEC_TTY, stack). Mount and namespace setup is not
/// repeated: the process sees the container as its PID 1 left it. A helper child joins the
/// namespaces (a thread of a multithreaded process cannot join a mount namespace) and starts the
/// process as the caller's child (CLONE_PARENT). Returns its pid and stores its pidfd in
/// `*pidfd`, or -1 with `err_*` set; a positive pid with `err_stage` set means it failed before
/// exec and has exited (the caller reaps it).
pid_t pl_exec(struct pl_spec *spec, int *pidfd);

/// Opens a pseudo-terminal pair (close-on-exec, not the caller's controlling terminal) sized
/// `rows` × `cols` (0: left as the kernel makes it). Returns 0 with both ends, or -1 with errno set.
int pl_openpty(int *leader, int *follower, unsigned short rows, unsigned short cols);

/// Reads a terminal's size (TIOCGWINSZ). Returns 0 or -1 with errno set (not a terminal).
int pl_get_window_size(int fd, unsigned short *rows, unsigned short *cols);

/// Sets a terminal's size (TIOCSWINSZ). Returns 0 or -1 with errno set.
int pl_set_window_size(int fd, unsigned short rows, unsigned short cols);

/// Human-readable name of a `pl_stage`.
const char *pl_stage_name(int stage);

/// The symbolic name of an errno value ("EINVAL"), or NULL.
const char *pl_errno_name(int err);

/// Opens `path` beneath the directory `rootfd`, resolving symlinks and ".." as if `rootfd` were
/// the root (openat2 RESOLVE_IN_ROOT). Returns a descriptor or -1 with errno set.
int pl_open_in_root(int rootfd, const char *path, int flags);

/// Installs handlers for `signals` that write the signal number as one byte into a pipe and
/// returns the pipe's read end (close-on-exec, non-blocking), or -1.
int pl_signal_pipe(const int *signals, size_t count);

/// Waits up to `timeout_ms` (-1: forever) for `pidfd` to become readable or `extra_fd` (if >= 0)
/// to have data. Returns 1 when the process exited, 2 when extra_fd is readable, 0 on timeout,
/// -1 on error.
int pl_wait_readable(int pidfd, int extra_fd, int timeout_ms);

/// Sends `sig` to the process behind `pidfd` (no pid-reuse race). Returns 0 or -1 with errno.
int pl_pidfd_signal(int pidfd, int sig);

/// Creates a network namespace with its loopback interface up, without a process in it, and
/// returns a descriptor for it (close-on-exec), or -1 with errno set. The calling thread enters
/// the new namespace briefly and returns to its own before this returns.
int pl_netns_create(void);

/// A close-on-exec memfd (for exporting BPF), or -1.
int pl_memfd(const char *name);

/// pipe2(fds, O_CLOEXEC): a pipe no other child inherits by accident. Returns 0 or -1 (errno).
int pl_pipe_cloexec(int fds[2]);

#ifdef __cplusplus
}
#endif

#endif
