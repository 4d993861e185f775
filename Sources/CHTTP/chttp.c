#include "chttp.h"

#include <curl/curl.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

// libcurl is loaded on first use, not linked: with its dependencies (TLS, Kerberos, LDAP, SSH,
// IDN, ...) it is about thirty shared libraries whose loading and symbol binding cost ~10 ms at
// every start of the process (measured: `curl --version` 13 ms against 0.8 ms for /bin/true).
// Most invocations of the CLI (`propeller run`, a stored image, the API client's siblings)
// never make a registry request.
static struct {
    CURLcode (*global_init)(long);
    CURL *(*easy_init)(void);
    CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
    CURLcode (*easy_perform)(CURL *);
    CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
    void (*easy_cleanup)(CURL *);
    const char *(*easy_strerror)(CURLcode);
    struct curl_slist *(*slist_append)(struct curl_slist *, const char *);
    void (*slist_free_all)(struct curl_slist *);
} curl;
static int curl_loaded;
static char curl_load_error[200];
static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void *resolve(void *lib, const char *name) {
    void *f = dlsym(lib, name);
    if (f == NULL && curl_load_error[0] == '\0') snprintf(curl_load_error, sizeof curl_load_error, "libcurl.so.4 has no %s", name);
    return f;
}

static void load_curl(void) {
    void *lib = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL) {
        const char *why = dlerror();
        snprintf(curl_load_error, sizeof curl_load_error, "cannot load libcurl (install libcurl4): %s", why ? why : "unknown error");
        return;
    }
    *(void **)&curl.global_init = resolve(lib, "curl_global_init");
    *(void **)&curl.easy_init = resolve(lib, "curl_easy_init");
    *(void **)&curl.easy_setopt = resolve(lib, "curl_easy_setopt");
    *(void **)&curl.easy_perform = resolve(lib, "curl_easy_perform");
    *(void **)&curl.easy_getinfo = resolve(lib, "curl_easy_getinfo");
    *(void **)&curl.easy_cleanup = resolve(lib, "curl_easy_cleanup");
    *(void **)&curl.easy_strerror = resolve(lib, "curl_easy_strerror");
    *(void **)&curl.slist_append = resolve(lib, "curl_slist_append");
    *(void **)&curl.slist_free_all = resolve(lib, "curl_slist_free_all");
    if (curl_load_error[0] != '\0') return;
    if (curl.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(curl_load_error, sizeof curl_load_error, "curl_global_init failed");
        return;
    }
    curl_loaded = 1;
}

static size_t body_thunk(char *data, size_t size, size_t nmemb, void *userdata) {
    const struct ph_request *r = userdata;
    return r->on_body ? r->on_body(data, size * nmemb, r->context) : size * nmemb;
}

static size_t header_thunk(char *data, size_t size, size_t nmemb, void *userdata) {
    const struct ph_request *r = userdata;
    return r->on_header ? r->on_header(data, size * nmemb, r->context) : size * nmemb;
}

void ph_global_init(void) { pthread_once(&curl_once, load_curl); }

void ph_perform(const struct ph_request *r, struct ph_response *out) {
    memset(out, 0, sizeof *out);
    pthread_once(&curl_once, load_curl);
    if (!curl_loaded) {
        out->curl_code = CURLE_FAILED_INIT;
        strncpy(out->error, curl_load_error, sizeof out->error - 1);
        return;
    }
    CURL *c = curl.easy_init();
    if (!c) {
        out->curl_code = CURLE_FAILED_INIT;
        strcpy(out->error, "curl_easy_init failed");
        return;
    }
    struct curl_slist *headers = NULL;
    for (size_t i = 0; i < r->nheaders; i++) headers = curl.slist_append(headers, r->headers[i]);
    curl.easy_setopt(c, CURLOPT_URL, r->url);
    curl.easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (strcmp(r->method, "HEAD") == 0) curl.easy_setopt(c, CURLOPT_NOBODY, 1L);
    else if (strcmp(r->method, "GET") != 0) curl.easy_setopt(c, CURLOPT_CUSTOMREQUEST, r->method);
    curl.easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl.easy_setopt(c, CURLOPT_WRITEFUNCTION, body_thunk);
    curl.easy_setopt(c, CURLOPT_WRITEDATA, (void *)r);
    curl.easy_setopt(c, CURLOPT_HEADERFUNCTION, header_thunk);
    curl.easy_setopt(c, CURLOPT_HEADERDATA, (void *)r);
    curl.easy_setopt(c, CURLOPT_ERRORBUFFER, out->error);
    curl.easy_setopt(c, CURLOPT_CONNECTTIMEOUT, r->connect_timeout_s > 0 ? r->connect_timeout_s : 30L);
    if (r->low_speed_time_s > 0) {
        curl.easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl.easy_setopt(c, CURLOPT_LOW_SPEED_TIME, r->low_speed_time_s);
    }
    // Blob downloads redirect to storage; curl never forwards our Authorization header to
    // another host (CURLOPT_UNRESTRICTED_AUTH stays off).
    curl.easy_setopt(c, CURLOPT_FOLLOWLOCATION, r->follow_redirects ? 1L : 0L);
    curl.easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
    curl.easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl.easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "https,http");
    if (r->range) curl.easy_setopt(c, CURLOPT_RANGE, r->range);
    if (r->ca_file) curl.easy_setopt(c, CURLOPT_CAINFO, r->ca_file);
    if (r->body) {
        curl.easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
        curl.easy_setopt(c, CURLOPT_POSTFIELDS, r->body);
    }
    out->curl_code = (int)curl.easy_perform(c);
    curl.easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    if (out->curl_code != 0 && out->error[0] == '\0') {
        strncpy(out->error, curl.easy_strerror((CURLcode)out->curl_code), sizeof out->error - 1);
    }
    curl.slist_free_all(headers);
    curl.easy_cleanup(c);
}
