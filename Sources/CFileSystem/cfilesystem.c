#include <sys/vfs.h>
#include "cfilesystem.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

int pf_open_in_root(int rootfd, const char *path, int flags, unsigned mode, int no_follow_last) {
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = (unsigned long long)(flags | O_CLOEXEC | (no_follow_last ? O_NOFOLLOW : 0));
    if (flags & O_CREAT) how.mode = mode;
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    return (int)syscall(SYS_openat2, rootfd, path, &how, sizeof how);
}

int pf_fsetxattr(int fd, const char *name, const void *value, unsigned long size) {
    return fsetxattr(fd, name, value, size, 0);
}

int pf_lsetxattrat(int dirfd, const char *name, const char *attr, const void *value, unsigned long size) {
    char path[4096];
    int n = snprintf(path, sizeof path, "/proc/self/fd/%d/%s", dirfd, name);
    if (n < 0 || (size_t)n >= sizeof path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return lsetxattr(path, attr, value, size, 0);
}

const char *pf_errno_name(int err) { return strerrorname_np(err); }

long pf_lgetxattr(const char *path, const char *name, void *value, unsigned long size) {
    return (long)lgetxattr(path, name, value, size);
}

long pf_filesystem_type(const char *path) {
    struct statfs fs;
    if (statfs(path, &fs) != 0) return -1;
    return (long)fs.f_type;
}

int pf_start_writeback(int fd, long long offset, long long length) {
    return (int)syscall(SYS_sync_file_range, fd, (off_t)offset, (off_t)length, (unsigned)SYNC_FILE_RANGE_WRITE);
}

int pf_syncfs(int fd) {
    return (int)syscall(SYS_syncfs, fd);
}
