#include "archive_loader.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

// libarchive is loaded on first use, not linked: it brings eleven shared libraries (nettle, acl,
// lzma, zstd, lz4, bz2, z, xml2 and ICU), which every start of `propeller-run` paid for though a
// `--rootfs` run, or a run of an image already unpacked, never reads a tar. Each function below
// has libarchive's own signature (checked by the compiler through __typeof__).
#define FUNCTIONS(X) \
    X(archive_read_new) X(archive_read_free) X(archive_read_support_filter_all) X(archive_read_support_format_tar) \
    X(archive_read_support_format_raw) X(archive_read_open) X(archive_read_open_filename) X(archive_read_next_header) \
    X(archive_read_data_block) X(archive_error_string) X(archive_entry_filetype) X(archive_entry_gid) \
    X(archive_entry_hardlink) X(archive_entry_mtime) X(archive_entry_mtime_nsec) X(archive_entry_pathname) \
    X(archive_entry_perm) X(archive_entry_size) X(archive_entry_symlink) X(archive_entry_uid) \
    X(archive_entry_xattr_next) X(archive_entry_xattr_reset)

#define POINTER(name) static __typeof__(&name) p_##name;
FUNCTIONS(POINTER)

static char load_error[256];
static int loaded;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void load(void) {
    void *lib = dlopen("libarchive.so.13", RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL) {
        const char *why = dlerror();
        snprintf(load_error, sizeof load_error, "cannot load libarchive (install libarchive13): %s", why ? why : "unknown error");
        return;
    }
#define RESOLVE(name) \
    *(void **)&p_##name = dlsym(lib, #name); \
    if (p_##name == NULL) { snprintf(load_error, sizeof load_error, "libarchive.so.13 has no %s", #name); return; }
    FUNCTIONS(RESOLVE)
    loaded = 1;
}

int pa_archive_load(char *error, size_t error_size) {
    pthread_once(&once, load);
    if (loaded) return 0;
    if (error_size > 0) snprintf(error, error_size, "%s", load_error);
    return -1;
}

struct archive *pa_archive_read_new(void) { return p_archive_read_new(); }
int pa_archive_read_free(struct archive *a) { return p_archive_read_free(a); }
int pa_archive_read_support_filter_all(struct archive *a) { return p_archive_read_support_filter_all(a); }
int pa_archive_read_support_format_tar(struct archive *a) { return p_archive_read_support_format_tar(a); }
int pa_archive_read_support_format_raw(struct archive *a) { return p_archive_read_support_format_raw(a); }
int pa_archive_read_open(struct archive *a, void *client_data, archive_open_callback *open, archive_read_callback *read, archive_close_callback *close) {
    return p_archive_read_open(a, client_data, open, read, close);
}
int pa_archive_read_open_filename(struct archive *a, const char *filename, size_t block_size) { return p_archive_read_open_filename(a, filename, block_size); }
int pa_archive_read_next_header(struct archive *a, struct archive_entry **entry) { return p_archive_read_next_header(a, entry); }
int pa_archive_read_data_block(struct archive *a, const void **buff, size_t *size, la_int64_t *offset) { return p_archive_read_data_block(a, buff, size, offset); }
const char *pa_archive_error_string(struct archive *a) { return p_archive_error_string(a); }
__LA_MODE_T pa_archive_entry_filetype(struct archive_entry *e) { return p_archive_entry_filetype(e); }
la_int64_t pa_archive_entry_gid(struct archive_entry *e) { return p_archive_entry_gid(e); }
const char *pa_archive_entry_hardlink(struct archive_entry *e) { return p_archive_entry_hardlink(e); }
time_t pa_archive_entry_mtime(struct archive_entry *e) { return p_archive_entry_mtime(e); }
long pa_archive_entry_mtime_nsec(struct archive_entry *e) { return p_archive_entry_mtime_nsec(e); }
const char *pa_archive_entry_pathname(struct archive_entry *e) { return p_archive_entry_pathname(e); }
__LA_MODE_T pa_archive_entry_perm(struct archive_entry *e) { return p_archive_entry_perm(e); }
la_int64_t pa_archive_entry_size(struct archive_entry *e) { return p_archive_entry_size(e); }
const char *pa_archive_entry_symlink(struct archive_entry *e) { return p_archive_entry_symlink(e); }
la_int64_t pa_archive_entry_uid(struct archive_entry *e) { return p_archive_entry_uid(e); }
int pa_archive_entry_xattr_next(struct archive_entry *e, const char **name, const void **value, size_t *size) { return p_archive_entry_xattr_next(e, name, value, size); }
int pa_archive_entry_xattr_reset(struct archive_entry *e) { return p_archive_entry_xattr_reset(e); }
