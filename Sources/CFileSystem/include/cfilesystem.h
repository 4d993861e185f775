// File-system calls Swift's Glibc module does not expose (openat2), for code that must never
// leave a directory tree: layer unpacking, rootfs handling.
#ifndef PROPELLER_CFILESYSTEM_H
#define PROPELLER_CFILESYSTEM_H

#ifdef __cplusplus
extern "C" {
#endif

/// Opens `path` beneath `rootfd` as if `rootfd` were "/": absolute symlinks and ".." resolve
/// inside it (openat2 RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS). With `no_follow_last`, a symlink
/// as the last component is not followed (O_NOFOLLOW). Returns a close-on-exec fd or -1/errno.
int pf_open_in_root(int rootfd, const char *path, int flags, unsigned mode, int no_follow_last);

/// Sets an extended attribute on an open file. Returns 0 or -1/errno.
int pf_fsetxattr(int fd, const char *name, const void *value, unsigned long size);

/// Sets an extended attribute on `name` in directory `dirfd` without following a symlink
/// (through /proc/self/fd/DIRFD/NAME with lsetxattr). Returns 0 or -1/errno.
int pf_lsetxattrat(int dirfd, const char *name, const char *attr, const void *value, unsigned long size);

/// Reads an extended attribute of `path` without following a symlink. Returns its size or -1/errno.
long pf_lgetxattr(const char *path, const char *name, void *value, unsigned long size);

/// Starts writing back [offset, offset+length) of fd without waiting (sync_file_range
/// SYNC_FILE_RANGE_WRITE), so that a later fsync has little left to do. 0, or -1 and errno.
int pf_start_writeback(int fd, long long offset, long long length);

/// Writes back everything dirty on the filesystem holding fd (syncfs). 0, or -1 and errno.
int pf_syncfs(int fd);

/// The filesystem type (statfs f_type, e.g. 0x01021994 for tmpfs) of path, or -1 and errno.
long pf_filesystem_type(const char *path);

/// The symbolic name of an errno value ("ENOENT"), or NULL.
const char *pf_errno_name(int err);

#ifdef __cplusplus
}
#endif
#endif
