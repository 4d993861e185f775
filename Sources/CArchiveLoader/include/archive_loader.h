#ifndef PROPELLER_ARCHIVE_LOADER_H
#define PROPELLER_ARCHIVE_LOADER_H

// libarchive's types and constants, and the functions Propeller uses, called through libarchive
// loaded on first use (dlopen) rather than linked: see archive_loader.c.
#include <archive.h>
#include <archive_entry.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Loads libarchive once. 0, or -1 with the reason in `error` (NUL-terminated).
int pa_archive_load(char *error, size_t error_size);

// The same signatures as libarchive's; valid only after pa_archive_load returned 0.
struct archive *pa_archive_read_new(void);
int pa_archive_read_free(struct archive *a);
int pa_archive_read_support_filter_all(struct archive *a);
int pa_archive_read_support_format_tar(struct archive *a);
int pa_archive_read_support_format_raw(struct archive *a);
int pa_archive_read_open(struct archive *a, void *client_data, archive_open_callback *open, archive_read_callback *read, archive_close_callback *close);
int pa_archive_read_open_filename(struct archive *a, const char *filename, size_t block_size);
int pa_archive_read_next_header(struct archive *a, struct archive_entry **entry);
int pa_archive_read_data_block(struct archive *a, const void **buff, size_t *size, la_int64_t *offset);
const char *pa_archive_error_string(struct archive *a);
__LA_MODE_T pa_archive_entry_filetype(struct archive_entry *e);
la_int64_t pa_archive_entry_gid(struct archive_entry *e);
const char *pa_archive_entry_hardlink(struct archive_entry *e);
time_t pa_archive_entry_mtime(struct archive_entry *e);
long pa_archive_entry_mtime_nsec(struct archive_entry *e);
const char *pa_archive_entry_pathname(struct archive_entry *e);
__LA_MODE_T pa_archive_entry_perm(struct archive_entry *e);
la_int64_t pa_archive_entry_size(struct archive_entry *e);
const char *pa_archive_entry_symlink(struct archive_entry *e);
la_int64_t pa_archive_entry_uid(struct archive_entry *e);
int pa_archive_entry_xattr_next(struct archive_entry *e, const char **name, const void **value, size_t *size);
int pa_archive_entry_xattr_reset(struct archive_entry *e);

#ifdef __cplusplus
}
#endif
#endif
