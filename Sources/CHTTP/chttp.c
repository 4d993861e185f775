#include "chttp.h"

#include <curl/curl.h>
#include <string.h>

static size_t body_thunk(char *data, size_t size, size_t nmemb, void *userdata) {
    const struct ph_request *r = userdata;
    return r->on_body ? r->on_body(data, size * nmemb, r->context) : size * nmemb;
}

static size_t header_thunk(char *data, size_t size, size_t nmemb, void *userdata) {
    const struct ph_request *r = userdata;
    return r->on_header ? r->on_header(data, size * nmemb, r->context) : size * nmemb;
}

void ph_global_init(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

void ph_perform(const struct ph_request *r, struct ph_response *out) {
    memset(out, 0, sizeof *out);
    CURL *c = curl_easy_init();
    if (!c) {
        out->curl_code = CURLE_FAILED_INIT;
        strcpy(out->error, "curl_easy_init failed");
        return;
    }
    struct curl_slist *headers = NULL;
    for (size_t i = 0; i < r->nheaders; i++) headers = curl_slist_append(headers, r->headers[i]);
    curl_easy_setopt(c, CURLOPT_URL, r->url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (strcmp(r->method, "HEAD") == 0) curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    else if (strcmp(r->method, "GET") != 0) curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, r->method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, body_thunk);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, (void *)r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, header_thunk);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, (void *)r);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, out->error);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, r->connect_timeout_s > 0 ? r->connect_timeout_s : 30L);
    if (r->low_speed_time_s > 0) {
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, r->low_speed_time_s);
    }
    // Blob downloads redirect to storage; curl never forwards our Authorization header to
    // another host (CURLOPT_UNRESTRICTED_AUTH stays off).
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, r->follow_redirects ? 1L : 0L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "https,http");
    if (r->range) curl_easy_setopt(c, CURLOPT_RANGE, r->range);
    if (r->ca_file) curl_easy_setopt(c, CURLOPT_CAINFO, r->ca_file);
    if (r->body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, r->body);
    }
    out->curl_code = (int)curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    if (out->curl_code != 0 && out->error[0] == '\0') {
        strncpy(out->error, curl_easy_strerror((CURLcode)out->curl_code), sizeof out->error - 1);
    }
    curl_slist_free_all(headers);
    curl_easy_cleanup(c);
}
