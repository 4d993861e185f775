// A small, non-variadic face of libcurl's easy interface for Swift (curl_easy_setopt is
// variadic, which Swift cannot call).
#ifndef PROPELLER_CHTTP_H
#define PROPELLER_CHTTP_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Called with each chunk of the response body; return the count consumed (anything else aborts).
typedef size_t (*ph_body_fn)(const char *data, size_t size, void *context);
/// Called with each response header line (status line included, CRLF included).
typedef size_t (*ph_header_fn)(const char *line, size_t size, void *context);

struct ph_request {
    const char *method;            ///< "GET", "HEAD", ...
    const char *url;
    const char *const *headers;    ///< "Name: value" lines
    size_t nheaders;
    const char *range;             ///< "START-" to resume, or NULL
    long connect_timeout_s;
    long low_speed_time_s;         ///< abort when slower than 1 byte/s for this long (0: never)
    int follow_redirects;
    const char *body;              ///< request body, or NULL
    size_t body_len;
    const char *ca_file;           ///< CA bundle that verifies the server, or NULL for the system's
    ph_body_fn on_body;
    ph_header_fn on_header;
    void *context;
};

struct ph_response {
    long status;
    int curl_code;                 ///< 0 on transport success
    char error[256];               ///< curl's message for curl_code
};

/// Performs one request synchronously.
void ph_perform(const struct ph_request *request, struct ph_response *response);

/// libcurl's global initialisation (call once before any thread uses ph_perform).
void ph_global_init(void);

#ifdef __cplusplus
}
#endif
#endif
