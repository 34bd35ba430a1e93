/*
 * test_info.c: the hardening of issue 9, from C. es_store_info_get (every field, and
 * recovered_bytes_dropped after "100 garbage bytes appended" and after
 * "cat a.store b.store > c.store"); es_set_log_callback (the recovery cut arrives as a
 * warning naming the bytes dropped, a poisoned handle as an error, NULL silences it);
 * a misused closed handle (es_close twice, es_append / reads / info after es_close)
 * refused without a crash; event types holding a NUL byte refused; ES_ERR_INVALID_HEADER
 * naming the path and the cause.
 *
 * Usage: test_info DIR
 */
#define _POSIX_C_SOURCE 200809L

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "check.h"

static const char *dir;

/* What the log callback has seen. */
static struct {
    int calls;
    int last_level;
    char last[2048];
    void *last_context;
} seen;

static void on_log(void *context, int32_t level, const char *message) {
    seen.calls++;
    seen.last_level = level;
    seen.last_context = context;
    snprintf(seen.last, sizeof seen.last, "%s", message);
}

static size_t file_size(const char *path) {
    struct stat st;
    CHECK(stat(path, &st) == 0);
    return (size_t)st.st_size;
}

static void append_bytes(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "ab");
    CHECK(f != NULL);
    CHECK(fwrite(data, 1, len, f) == len);
    CHECK(fclose(f) == 0);
}

/* Copies `from` to the end of `to` (`cat from >> to`). */
static void cat_onto(const char *to, const char *from) {
    FILE *f = fopen(from, "rb");
    char buf[4096];
    size_t n;
    CHECK(f != NULL);
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
        append_bytes(to, buf, n);
    }
    fclose(f);
}

/* A new store at `name` holding `n` events in `streams` streams; its path in `path`. */
static void make_store(char *path, size_t cap, const char *name, int n, int streams) {
    es_store *store = NULL;
    int i;
    join_path(path, cap, dir, name);
    remove(path);
    OK(es_open(path, &store));
    for (i = 0; i < n; i++) {
        es_uuid s = make_uuid(0x44, (unsigned char)(i % streams));
        es_proposed_event ev = make_event("Info", "some payload");
        OK(es_append(store, &s, ES_EXPECTED_ANY, &ev, 1, NULL));
    }
    es_close(store);
}

static void test_info_fields(void) {
    char path[4096];
    es_store *store = NULL;
    es_store_info info;
    size_t size;
    make_store(path, sizeof path, "info.store", 5, 2);
    size = file_size(path);
    OK(es_open(path, &store));
    memset(&info, 0xab, sizeof info);
    OK(es_store_info_get(store, &info));
    CHECK(info.format_version >= 1);
    CHECK(info.read_only == 0);
    CHECK(info.poisoned == 0);
    CHECK(info.event_count == 5);
    CHECK(info.stream_count == 2);
    CHECK(info.data_bytes == size); /* closed stores are exactly their data */
    CHECK(info.recovered_bytes_dropped == 0);
    CHECK(info.index_bytes > 0);
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_store_info_get(store, NULL));
    LAST_ERROR_HAS("out_info");
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_store_info_get(NULL, &info));
    LAST_ERROR_HAS("store is NULL");
    es_close(store);
}

/* "100 garbage bytes appended": open cuts them, says so, and logs it. */
static void test_garbage_tail_is_reported(void) {
    char path[4096];
    char garbage[100];
    es_store *store = NULL;
    es_store_info info;
    size_t size;
    int marker = 0;
    make_store(path, sizeof path, "garbage-tail.store", 3, 1);
    size = file_size(path);
    memset(garbage, 'g', sizeof garbage);
    append_bytes(path, garbage, sizeof garbage);

    memset(&seen, 0, sizeof seen);
    es_set_log_callback(on_log, &marker);
    OK(es_open(path, &store));
    OK(es_store_info_get(store, &info));
    CHECK(info.recovered_bytes_dropped == 100);
    CHECK(info.event_count == 3);
    CHECK(info.data_bytes == size);
    CHECK(seen.calls == 1);
    CHECK(seen.last_level == ES_LOG_WARN);
    CHECK(seen.last_context == &marker);
    CHECK(strstr(seen.last, "cut off 100 bytes") != NULL);
    CHECK(strstr(seen.last, path) != NULL);
    es_close(store);
    CHECK(file_size(path) == size);

    /* Reopened: nothing more to cut, nothing logged. */
    OK(es_open(path, &store));
    OK(es_store_info_get(store, &info));
    CHECK(info.recovered_bytes_dropped == 0);
    CHECK(seen.calls == 1);
    es_close(store);

    /* With the callback removed, a cut is silent (but still reported by info). */
    append_bytes(path, garbage, 10);
    es_set_log_callback(NULL, NULL);
    OK(es_open(path, &store));
    OK(es_store_info_get(store, &info));
    CHECK(info.recovered_bytes_dropped == 10);
    CHECK(seen.calls == 1);
    es_close(store);
}

/* "cat a.store b.store > c.store": b's salt differs, so its batches are not c's. */
static void test_concatenated_stores_are_reported(void) {
    char a[4096], b[4096], c[4096];
    es_store *store = NULL;
    es_store_info info;
    size_t a_size, b_size;
    make_store(a, sizeof a, "cat-a.store", 4, 2);
    make_store(b, sizeof b, "cat-b.store", 6, 3);
    a_size = file_size(a);
    b_size = file_size(b);
    join_path(c, sizeof c, dir, "cat-c.store");
    remove(c);
    cat_onto(c, a);
    cat_onto(c, b);

    memset(&seen, 0, sizeof seen);
    es_set_log_callback(on_log, NULL);
    OK(es_open(c, &store));
    OK(es_store_info_get(store, &info));
    CHECK(info.event_count == 4);
    CHECK(info.recovered_bytes_dropped == b_size);
    CHECK(seen.calls == 1 && seen.last_level == ES_LOG_WARN);
    {
        char want[64];
        snprintf(want, sizeof want, "cut off %zu bytes", b_size);
        CHECK(strstr(seen.last, want) != NULL);
    }
    es_close(store);
    es_set_log_callback(NULL, NULL);
    CHECK(file_size(c) == a_size);
}

/* A failed write poisons the handle: info says so, and the callback hears it. */
static void test_poisoned_is_reported(void) {
    char path[4096];
    es_store *store = NULL;
    es_store_info info;
    es_uuid s = make_uuid(0x45, 1);
    static uint8_t payload[60000];
    es_proposed_event ev = make_event("Large", NULL);
    struct rlimit saved, limited;
    es_status st = ES_OK;
    int i;
    make_store(path, sizeof path, "poison-info.store", 1, 1);
    ev.payload = payload;
    ev.payload_len = sizeof payload;
    memset(payload, 'p', sizeof payload);
    OK(es_open(path, &store));
    memset(&seen, 0, sizeof seen);
    es_set_log_callback(on_log, NULL);
    CHECK(signal(SIGXFSZ, SIG_IGN) != SIG_ERR);
    CHECK(getrlimit(RLIMIT_FSIZE, &saved) == 0);
    limited = saved;
    limited.rlim_cur = (rlim_t)file_size(path);
    CHECK(setrlimit(RLIMIT_FSIZE, &limited) == 0);
    for (i = 0; i < 64 && st == ES_OK; i++) {
        st = es_append(store, &s, ES_EXPECTED_ANY, &ev, 1, NULL);
    }
    CHECK(setrlimit(RLIMIT_FSIZE, &saved) == 0);
    EXPECT(ES_ERR_IO, st);
    OK(es_store_info_get(store, &info));
    CHECK(info.poisoned == 1);
    CHECK(seen.calls >= 1 && seen.last_level == ES_LOG_ERROR);
    CHECK(strstr(seen.last, "poisoned") != NULL);
    CHECK(strstr(seen.last, path) != NULL);
    es_set_log_callback(NULL, NULL);
    es_close(store);
}

/* Misuse of a closed handle is refused, not a crash (see es_close). */
static void test_closed_handle(void) {
    char path[4096];
    es_store *store = NULL;
    es_store_info info;
    es_events got = {NULL, 0, NULL};
    es_uuid s = make_uuid(0x46, 1);
    es_proposed_event ev = make_event("AfterClose", "x");
    uint64_t version = 0;
    make_store(path, sizeof path, "closed.store", 2, 1);
    OK(es_open(path, &store));
    es_close(store);
    es_close(store); /* twice */
    LAST_ERROR_HAS("es_close");
    LAST_ERROR_HAS("already closed");
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_append(store, &s, ES_EXPECTED_ANY, &ev, 1, NULL));
    LAST_ERROR_HAS("es_append");
    LAST_ERROR_HAS("already closed");
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_read_all(store, 0, 10, &got));
    CHECK(got.items == NULL && got.len == 0 && got.owner == NULL);
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_read_stream(store, &s, 0, 10, &got));
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_stream_version(store, &s, &version));
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_store_info_get(store, &info));
    CHECK(es_global_position(store) == 0);
    LAST_ERROR_HAS("es_global_position");
    /* The functions of 0.2 are quarantined too (they once dereferenced the closed
     * handle's dropped store). */
    {
        es_stream_append part;
        es_append_result res;
        es_streams streams = {NULL, 0, NULL};
        es_subscription *sub = NULL;
        uint64_t next = 0, pos = 0;
        part.stream_id = s;
        part.expected_version = ES_EXPECTED_ANY;
        part.events = &ev;
        part.count = 1;
        EXPECT(ES_ERR_INVALID_ARGUMENT, es_append_multi(store, &part, 1, &res));
        LAST_ERROR_HAS("already closed");
        EXPECT(ES_ERR_INVALID_ARGUMENT, es_list_streams(store, 0, 10, &streams));
        LAST_ERROR_HAS("already closed");
        CHECK(streams.items == NULL && streams.len == 0 && streams.owner == NULL);
        EXPECT(ES_ERR_INVALID_ARGUMENT, es_read_stream_backward(store, &s, UINT64_MAX, 10, &got));
        LAST_ERROR_HAS("already closed");
        EXPECT(ES_ERR_INVALID_ARGUMENT, es_read_all_backward(store, UINT64_MAX, 10, &got));
        LAST_ERROR_HAS("already closed");
        EXPECT(ES_ERR_INVALID_ARGUMENT, es_read_event(store, &s, &got));
        LAST_ERROR_HAS("already closed");
        CHECK(got.items == NULL && got.len == 0 && got.owner == NULL);
        EXPECT(ES_ERR_INVALID_ARGUMENT, es_read_all_filtered(store, 0, 10, NULL, &got, &next));
        LAST_ERROR_HAS("already closed");
        EXPECT(ES_ERR_INVALID_ARGUMENT, es_subscribe(store, 0, NULL, &sub));
        LAST_ERROR_HAS("already closed");
        CHECK(sub == NULL);
        EXPECT(ES_ERR_INVALID_ARGUMENT, es_wait(store, 0, 0, &pos));
        LAST_ERROR_HAS("already closed");
        es_wake(store); /* does nothing, no crash */
    }
    /* The file was closed properly the first time: another handle opens it. */
    OK(es_open(path, &store));
    CHECK(es_global_position(store) == 2);
    es_close(store);
}

/* Event types with a NUL byte: ES_ERR_INVALID_ARGUMENT, nothing written. */
static void test_nul_in_event_type(void) {
    char path[4096];
    es_store *store = NULL;
    es_uuid s = make_uuid(0x47, 1);
    static const char type[] = "Order\0Placed";
    es_proposed_event ev[2];
    size_t size;
    make_store(path, sizeof path, "nul-type.store", 1, 1);
    size = file_size(path);
    ev[0] = make_event("Fine", "a");
    ev[1] = make_event("Fine", "b");
    ev[1].event_type = type;
    ev[1].event_type_len = sizeof type - 1; /* the NUL in the middle is part of it */
    OK(es_open(path, &store));
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_append(store, &s, ES_EXPECTED_ANY, ev, 2, NULL));
    LAST_ERROR_HAS("NUL");
    CHECK(es_global_position(store) == 1);
    es_close(store);
    CHECK(file_size(path) == size);
}

/* ES_ERR_INVALID_HEADER names the path and the cause. */
static void test_invalid_header_names_cause(void) {
    char path[4096];
    es_store *store = NULL;
    FILE *f;
    unsigned char header[32];
    make_store(path, sizeof path, "newer.store", 1, 1);
    f = fopen(path, "r+b");
    CHECK(f != NULL);
    CHECK(fread(header, 1, sizeof header, f) == sizeof header);
    header[6] = 99; /* format version 99 */
    header[7] = 0;
    CHECK(fseek(f, 0, SEEK_SET) == 0);
    CHECK(fwrite(header, 1, sizeof header, f) == sizeof header);
    CHECK(fclose(f) == 0);
    EXPECT(ES_ERR_INVALID_HEADER, es_open(path, &store));
    LAST_ERROR_HAS(path);
    LAST_ERROR_HAS("newer format version 99");
    LAST_ERROR_HAS("this library reads format version");
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    dir = argv[1];
    test_info_fields();
    test_garbage_tail_is_reported();
    test_concatenated_stores_are_reported();
    test_poisoned_is_reported();
    test_closed_handle();
    test_nul_in_event_type();
    test_invalid_header_names_cause();
    report_passed("test_info");
    return 0;
}
