// probe: a static program that reports, as JSON, what a process inside a container can see and
// do, plus a few workloads for limit tests. Built with `gcc -static` by build-rootfs.sh.
//
//   probe                 report (JSON on stdout)
//   probe exit N          exit with status N
//   probe hog MIB         allocate and touch MIB MiB, 1 MiB at a time, then report
//   probe forkbomb N      fork up to N sleeping children; report how many forks succeeded
//   probe spin SECONDS    busy-loop, then report CPU time used vs wall time
//   probe ignore-term     ignore SIGTERM in a tree of 3 processes and sleep forever
//   probe sleep SECONDS   sleep
//   probe cat             copy stdin to stdout, byte for byte
//   probe bytes           write every byte value 0..255 to stdout, then to stderr
//   probe escape MARKER   try the ways out of a container (terminal injection, sockets, syscalls,
//                         device nodes, /proc and /sys writes, chroot breakout); JSON of each
//                         attempt: "ok" means it got through, else the errno name. MARKER is a
//                         host path that must stay invisible, even after the chroot breakout.
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/personality.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <termios.h>
#include <linux/perf_event.h>
#include <time.h>
#include <unistd.h>

static void json_str(const char *key, const char *value, int comma) {
    printf("\"%s\":\"", key);
    for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
        if (*p == '"' || *p == '\\') printf("\\%c", *p);
        else if (*p < 0x20) printf("\\u%04x", *p);
        else putchar(*p);
    }
    printf("\"%s", comma ? "," : "");
}

static const char *result(long rc) {
    if (rc >= 0) return "ok";
    const char *n = strerrorname_np(errno);
    return n ? n : "error";
}

static void status_field(const char *name, char *out, size_t cap) {
    out[0] = '\0';
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return;
    char line[512];
    size_t n = strlen(name);
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, name, n) == 0 && line[n] == ':') {
            char *v = line + n + 1;
            while (*v == ' ' || *v == '\t') v++;
            v[strcspn(v, "\n")] = '\0';
            snprintf(out, cap, "%s", v);
        }
    }
    fclose(f);
}

static long read_bytes(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    char buf[64];
    long n = read(fd, buf, sizeof buf);
    close(fd);
    return n;
}

static int dir_entries(const char *path) {
    DIR *d = opendir(path);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

static int is_readonly(const char *path) {
    struct statvfs st;
    if (statvfs(path, &st) < 0) return -1;
    return (st.f_flag & ST_RDONLY) ? 1 : 0;
}

static int report(void) {
    char buf[256];
    printf("{");
    printf("\"pid\":%d,\"ppid\":%d,\"uid\":%d,\"gid\":%d,\"euid\":%d,", getpid(), getppid(), getuid(), getgid(), geteuid());
    gid_t groups[64];
    int ng = getgroups(64, groups);
    printf("\"groups\":[");
    for (int i = 0; i < ng; i++) printf("%s%d", i ? "," : "", groups[i]);
    printf("],");
    gethostname(buf, sizeof buf);
    json_str("hostname", buf, 1);
    if (getcwd(buf, sizeof buf)) json_str("cwd", buf, 1);
    const char *fields[] = {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp"};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        status_field(fields[i], buf, sizeof buf);
        json_str(fields[i], buf, 1);
    }
    // Network interfaces in this namespace.
    printf("\"interfaces\":[");
    FILE *f = fopen("/proc/net/dev", "r");
    int first = 1;
    if (f) {
        char line[512];
        int lineno = 0;
        while (fgets(line, sizeof line, f)) {
            if (++lineno <= 2) continue;
            char *colon = strchr(line, ':');
            if (!colon) continue;
            *colon = '\0';
            char *name = line;
            while (*name == ' ') name++;
            printf("%s\"%s\"", first ? "" : ",", name);
            first = 0;
        }
        fclose(f);
    }
    printf("],");
    char ns[64] = "";
    ssize_t nl = readlink("/proc/self/ns/net", ns, sizeof ns - 1);
    ns[nl > 0 ? nl : 0] = '\0';
    json_str("netns", ns, 1);
    int sfd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strcpy(ifr.ifr_name, "lo");
    int lo_up = sfd >= 0 && ioctl(sfd, SIOCGIFFLAGS, &ifr) == 0 && (ifr.ifr_flags & IFF_UP);
    if (sfd >= 0) close(sfd);
    printf("\"lo_up\":%s,", lo_up ? "true" : "false");
    // Open descriptors (other than the one used to list them).
    printf("\"fds\":[");
    DIR *d = opendir("/proc/self/fd");
    first = 1;
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.') continue;
            int fd = atoi(e->d_name);
            if (fd == dirfd(d)) continue;
            printf("%s%d", first ? "" : ",", fd);
            first = 0;
        }
        closedir(d);
    }
    printf("],");
    // Masked paths: bytes readable (files) or entries visible (directories).
    printf("\"masked\":{");
    const char *files[] = {"/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/proc/latency_stats"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) printf("\"%s\":%ld,", files[i], read_bytes(files[i]));
    const char *dirs[] = {"/proc/acpi", "/proc/scsi", "/sys/firmware"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) printf("\"%s\":%d%s", dirs[i], dir_entries(dirs[i]), i + 1 < sizeof dirs / sizeof dirs[0] ? "," : "");
    printf("},");
    printf("\"readonly\":{\"/sys\":%d,\"/proc/sys\":%d,\"/proc/sysrq-trigger\":%d,\"/\":%d},", is_readonly("/sys"),
           is_readonly("/proc/sys"), is_readonly("/proc/sysrq-trigger"), is_readonly("/"));
    int wfd = open("/proc/sys/kernel/hostname", O_WRONLY);
    json_str("write_proc_sys", wfd >= 0 ? "ok" : result(-1), 1);
    if (wfd >= 0) close(wfd);
    // Privileged operations the default profile and capabilities must refuse.
    printf("\"syscalls\":{");
    json_str("mount", result(mount("none", "/tmp", "tmpfs", 0, NULL)), 1);
    json_str("unshare", result(unshare(CLONE_NEWNS)), 1);
    json_str("keyctl", result(syscall(SYS_keyctl, 1 /* KEYCTL_JOIN_SESSION_KEYRING */, 0)), 1);
    json_str("add_key", result(syscall(SYS_add_key, "user", "probe", "x", 1, -2)), 1);
    // PTRACE_TRACEME in a child: if it succeeded in this process, every later signal would stop us.
    pid_t tracee = fork();
    if (tracee == 0) _exit(ptrace(PTRACE_TRACEME, 0, 0, 0) < 0 ? errno : 0);
    int tstatus = 0;
    if (tracee > 0) waitpid(tracee, &tstatus, 0);
    errno = WIFEXITED(tstatus) ? WEXITSTATUS(tstatus) : EIO;
    json_str("ptrace", tracee < 0 ? result(-1) : (errno == 0 ? "ok" : result(-1)), 1);
    int nsfd = open("/proc/self/ns/uts", O_RDONLY);
    json_str("setns", result(setns(nsfd, 0)), 1);
    if (nsfd >= 0) close(nsfd);
    json_str("bpf", result(syscall(SYS_bpf, 0, NULL, 0)), 1);
    json_str("kexec_load", result(syscall(SYS_kexec_load, 0, 0, NULL, 0)), 1);
    json_str("personality_unsafe", result(syscall(SYS_personality, 0x0040000 /* ADDR_NO_RANDOMIZE */)), 1);
    json_str("personality_query", result(syscall(SYS_personality, 0xffffffff)), 1);
    long pid = syscall(SYS_clone, CLONE_NEWNET | SIGCHLD, NULL, NULL, NULL, 0);
    if (pid == 0) _exit(0);
    if (pid > 0) waitpid((pid_t)pid, NULL, 0);
    json_str("clone_newnet", result(pid), 1);
    pid = fork();
    if (pid == 0) _exit(0);
    if (pid > 0) waitpid((pid_t)pid, NULL, 0);
    json_str("fork", result(pid), 1);
    json_str("sethostname", result(sethostname("x", 1)), 1);
    json_str("chroot", result(chroot("/")), 1);
    // A device node the task makes itself must not open (nodev mounts), wherever it puts it.
    unlink("/dev/probe-mem");
    unlink("/tmp/probe-mem");
    json_str("mknod_dev", result(mknod("/dev/probe-mem", S_IFCHR | 0600, makedev(1, 1))), 1);
    json_str("open_dev_node", result(open("/dev/probe-mem", O_RDONLY | O_CLOEXEC)), 1);
    mknod("/tmp/probe-mem", S_IFCHR | 0600, makedev(1, 1));
    json_str("open_tmp_node", result(open("/tmp/probe-mem", O_RDONLY | O_CLOEXEC)), 1);
    unlink("/tmp/probe-mem");
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    json_str("open_dev_null", result(devnull), 0);
    if (devnull >= 0) close(devnull);
    printf("},");
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    printf("\"nofile\":[%llu,%llu],", (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max);
    char cg[1024] = "";
    f = fopen("/proc/self/cgroup", "r");
    if (f) {
        size_t n = fread(cg, 1, sizeof cg - 1, f);
        cg[n] = '\0';
        fclose(f);
    }
    json_str("cgroup", cg, 1);
    const char *path = getenv("PATH");
    json_str("path_env", path ? path : "", 1);
    const char *home = getenv("HOME");
    json_str("home_env", home ? home : "", 0);
    printf("}\n");
    return 0;
}

static int hog(long mib) {
    for (long i = 0; i < mib; i++) {
        char *p = malloc(1 << 20);
        if (!p) {
            printf("{\"allocated_mib\":%ld,\"error\":\"malloc\"}\n", i);
            return 1;
        }
        memset(p, 1, 1 << 20);
    }
    printf("{\"allocated_mib\":%ld}\n", mib);
    return 0;
}

static int forkbomb(int n) {
    int forked = 0, err = 0;
    for (int i = 0; i < n; i++) {
        pid_t p = fork();
        if (p == 0) {
            pause();
            _exit(0);
        }
        if (p < 0) {
            err = errno;
            break;
        }
        forked++;
    }
    const char *name = err ? strerrorname_np(err) : "none";
    printf("{\"forked\":%d,\"error\":\"%s\"}\n", forked, name ? name : "?");
    fflush(stdout);
    return 0;
}

static double now(clockid_t c) {
    struct timespec ts;
    clock_gettime(c, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int spin(double seconds) {
    double start = now(CLOCK_MONOTONIC), cpu0 = now(CLOCK_PROCESS_CPUTIME_ID);
    volatile unsigned long x = 0;
    while (now(CLOCK_MONOTONIC) - start < seconds) for (int i = 0; i < 10000; i++) x += i;
    double wall = now(CLOCK_MONOTONIC) - start, cpu = now(CLOCK_PROCESS_CPUTIME_ID) - cpu0;
    printf("{\"wall\":%.3f,\"cpu\":%.3f,\"ratio\":%.3f}\n", wall, cpu, cpu / wall);
    return 0;
}

static int ignore_term(void) {
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    for (int i = 0; i < 2; i++) {
        if (fork() == 0) {
            for (;;) pause();
        }
    }
    printf("{\"ready\":true}\n");
    fflush(stdout);
    for (;;) pause();
}

static int cat(void) {
    char buf[65536];
    for (;;) {
        ssize_t n = read(0, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return n < 0;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(1, buf + off, (size_t)(n - off));
            if (w < 0) return 1;
            off += w;
        }
    }
}

static int bytes(void) {
    unsigned char b[256];
    for (int i = 0; i < 256; i++) b[i] = (unsigned char)i;
    if (write(1, b, 256) != 256) return 1;
    if (write(2, b, 256) != 256) return 1;
    return 0;
}


// One attempt per line of the JSON object; `rc` < 0 with errno set means refused.
static int first_attempt = 1;
static void attempt(const char *name, long rc) {
    printf("%s\n\"%s\":\"%s\"", first_attempt ? "" : ",", name, result(rc));
    first_attempt = 0;
}

static long write_file(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    long n = write(fd, text, strlen(text));
    int err = errno;
    close(fd);
    errno = err;
    return n < 0 ? -1 : 0;
}

static long tiocsti(int fd, unsigned long high) {
    char c = '#';
    return syscall(SYS_ioctl, fd, (unsigned long)TIOCSTI | high, &c);
}

static int escape(const char *marker) {
    // These attempts succeed as root on a host (mount over /tmp, core_pattern): run them only
    // inside a container, as the first process of a PID namespace or as a process whose parent is
    // outside its PID namespace (one started by `task exec`), never on the host.
    if (getpid() != 1 && getppid() != 0) {
        fprintf(stderr, "probe escape: refusing to run outside a container (not PID 1, parent in this PID namespace)\n");
        return 2;
    }
    printf("{");
    // Terminal injection: on the inherited descriptors and on /dev/tty.
    for (int fd = 0; fd < 3; fd++) {
        char name[32];
        snprintf(name, sizeof name, "tiocsti_fd%d", fd);
        attempt(name, tiocsti(fd, 0));
        snprintf(name, sizeof name, "tiocsti_fd%d_high_bits", fd);
        attempt(name, tiocsti(fd, 1UL << 32));
    }
    int tty = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
    attempt("open_dev_tty", tty);
    if (tty >= 0) { attempt("tiocsti_dev_tty", tiocsti(tty, 0)); close(tty); }
    attempt("getsid_is_own", getsid(0) == getpid() ? 0 : (errno = EPERM, -1));
    // Sockets.
    long fd;
    attempt("socket_vsock", fd = syscall(SYS_socket, 40, SOCK_STREAM, 0)); if (fd >= 0) close((int)fd);
    attempt("socket_vsock_high_bits", fd = syscall(SYS_socket, 40UL | (1UL << 32), SOCK_STREAM, 0)); if (fd >= 0) close((int)fd);
    attempt("socket_packet", fd = socket(AF_PACKET, SOCK_RAW, 0)); if (fd >= 0) close((int)fd);
    attempt("socket_raw", fd = socket(AF_INET, SOCK_RAW, 1)); if (fd >= 0) close((int)fd);
    // Kernel interfaces a container has no business with.
    attempt("mount", mount("none", "/tmp", "tmpfs", 0, NULL));
    attempt("unshare_user", unshare(CLONE_NEWUSER));
    attempt("unshare_mount", unshare(CLONE_NEWNS));
    int nsfd = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
    attempt("setns", setns(nsfd, 0));
    if (nsfd >= 0) close(nsfd);
    attempt("keyctl", syscall(SYS_keyctl, 1 /* KEYCTL_JOIN_SESSION_KEYRING */, 0));
    attempt("bpf", syscall(SYS_bpf, 0, NULL, 0));
    struct perf_event_attr pe;
    memset(&pe, 0, sizeof pe);
    pe.type = PERF_TYPE_SOFTWARE;
    pe.size = sizeof pe;
    pe.config = PERF_COUNT_SW_CPU_CLOCK;
    attempt("perf_event_open", fd = syscall(SYS_perf_event_open, &pe, 0, -1, -1, 0)); if (fd >= 0) close((int)fd);
    attempt("userfaultfd", fd = syscall(SYS_userfaultfd, 0)); if (fd >= 0) close((int)fd);
    char ring[120];
    memset(ring, 0, sizeof ring);
    attempt("io_uring_setup", fd = syscall(SYS_io_uring_setup, 4, ring)); if (fd >= 0) close((int)fd);
    attempt("open_by_handle_at", syscall(SYS_open_by_handle_at, AT_FDCWD, ring, O_RDONLY));
    pid_t child = fork();
    if (child == 0) { pause(); _exit(0); }
    attempt("ptrace_attach", child > 0 ? ptrace(PTRACE_ATTACH, child, 0, 0) : -1);
    if (child > 0) { kill(child, SIGKILL); waitpid(child, NULL, 0); }
    attempt("clone_newuser", fd = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, NULL, NULL, NULL, 0));
    if (fd == 0) _exit(0);
    if (fd > 0) waitpid((pid_t)fd, NULL, 0);
    attempt("kexec_load", syscall(SYS_kexec_load, 0, 0, NULL, 0));
    attempt("init_module", syscall(SYS_init_module, NULL, 0, ""));
    // Devices, /proc and /sys.
    unlink("/tmp/escape-disk");
    attempt("mknod_block", mknod("/tmp/escape-disk", S_IFBLK | 0600, makedev(8, 0)));
    attempt("open_block", fd = open("/tmp/escape-disk", O_RDONLY | O_CLOEXEC)); if (fd >= 0) close((int)fd);
    unlink("/tmp/escape-disk");
    attempt("read_proc_kcore", read_bytes("/proc/kcore") > 0 ? 0 : (errno = errno ? errno : EACCES, -1));
    attempt("write_sysrq_trigger", write_file("/proc/sysrq-trigger", "h"));
    attempt("write_proc_sys", write_file("/proc/sys/kernel/core_pattern", "|/tmp/x"));
    attempt("write_sys", write_file("/sys/kernel/uevent_helper", "/tmp/x"));
    attempt("write_cgroup_procs", write_file("/sys/fs/cgroup/cgroup.procs", "1"));
    attempt("mount_cgroup", mount("cgroup", "/tmp", "cgroup2", 0, NULL));
    // Descriptors above 2 would be the runtime's.
    int inherited = 0;
    for (int i = 3; i < 1024; i++) if (fcntl(i, F_GETFD) >= 0) inherited++;
    attempt("inherited_descriptors", inherited ? 0 : (errno = EBADF, -1));
    // The host marker must not be visible, before or after a classic chroot breakout.
    attempt("host_marker_visible", access(marker, F_OK));
    mkdir("/tmp/escape-jail", 0700);
    long rc = chroot("/tmp/escape-jail");
    if (rc == 0) {
        for (int i = 0; i < 64; i++) if (chdir("..") < 0) break;
        rc = chroot(".");
    }
    attempt("chroot_breakout_reaches_host", rc == 0 ? access(marker, F_OK) : -1);
    printf("\n}\n");
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) return report();
    const char *cmd = argv[1];
    const char *arg = argc > 2 ? argv[2] : "0";
    if (!strcmp(cmd, "exit")) return atoi(arg);
    if (!strcmp(cmd, "hog")) return hog(atol(arg));
    if (!strcmp(cmd, "forkbomb")) return forkbomb(atoi(arg));
    if (!strcmp(cmd, "spin")) return spin(atof(arg));
    if (!strcmp(cmd, "ignore-term")) return ignore_term();
    if (!strcmp(cmd, "sleep")) return sleep((unsigned)atoi(arg)) ? 1 : 0;
    if (!strcmp(cmd, "cat")) return cat();
    if (!strcmp(cmd, "bytes")) return bytes();
    if (!strcmp(cmd, "escape")) return escape(argc > 2 ? argv[2] : "/nonexistent-marker");
    fprintf(stderr, "probe: unknown command %s\n", cmd);
    return 2;
}
