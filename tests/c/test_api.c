/*
 * test_api.c: every function of eventstore.h on one thread: results, argument checks
 * (NULL for every pointer argument), the statuses that need no damaged file
 * (OK, INVALID_ARGUMENT, WRONG_EXPECTED_VERSION, STREAM_NOT_FOUND, EVENT_TOO_LARGE),
 * ownership of read results (es_free twice, results used after es_close), the
 * thread's last error, and the version macros against es_version().
 *
 * Usage: test_api DIR
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static char store_path[4096];

/* A pointer value that is not NULL, for checking that outputs get overwritten. */
#define GARBAGE ((void *)(uintptr_t)0x1)

static void test_versions(void) {
    char expected[64];
    snprintf(expected, sizeof expected, "%d.%d.%d", ES_VERSION_MAJOR, ES_VERSION_MINOR,
             ES_VERSION_PATCH);
    CHECK(es_version() != NULL);
    CHECK(strcmp(es_version(), expected) == 0);
}

static void test_status_names(void) {
    static const char *const names[] = {
        "ES_OK", "ES_ERR_INVALID_ARGUMENT", "ES_ERR_IO", "ES_ERR_INVALID_HEADER",
        "ES_ERR_CORRUPT_RECORD", "ES_ERR_WRONG_EXPECTED_VERSION", "ES_ERR_STREAM_NOT_FOUND",
        "ES_ERR_EVENT_TOO_LARGE", "ES_ERR_LOCKED", "ES_ERR_POISONED", "ES_ERR_INTERNAL",
    };
    int32_t s;
    /* The values are the contract. */
    CHECK(ES_OK == 0 && ES_ERR_INVALID_ARGUMENT == 1 && ES_ERR_IO == 2);
    CHECK(ES_ERR_INVALID_HEADER == 3 && ES_ERR_CORRUPT_RECORD == 4);
    CHECK(ES_ERR_WRONG_EXPECTED_VERSION == 5 && ES_ERR_STREAM_NOT_FOUND == 6);
    CHECK(ES_ERR_EVENT_TOO_LARGE == 7 && ES_ERR_LOCKED == 8 && ES_ERR_POISONED == 9);
    CHECK(ES_ERR_INTERNAL == 10);
    CHECK(sizeof(es_status) == 4);
    for (s = 0; s <= 10; s++) {
        CHECK(strcmp(es_status_name(s), names[s]) == 0);
    }
    CHECK(strcmp(es_status_name(1000), "ES_UNKNOWN") == 0);
    CHECK(strcmp(es_status_name(-1), "ES_UNKNOWN") == 0);
    CHECK(strcmp(es_status_name(INT32_MAX), "ES_UNKNOWN") == 0);
    CHECK(strcmp(es_status_name(INT32_MIN), "ES_UNKNOWN") == 0);
}

static void test_constants(void) {
    CHECK(ES_MAX_EVENT_SIZE == 65536);
    CHECK(ES_MAX_EVENT_TYPE_LEN == 256);
    CHECK(ES_RECORD_OVERHEAD > 0 && ES_RECORD_OVERHEAD < 1024);
    CHECK(ES_EXPECTED_ANY == -2 && ES_EXPECTED_NO_STREAM == -1);
    CHECK(ES_EXPECTED_STREAM_EXISTS == -4);
    CHECK(sizeof(es_uuid) == 16);
}

static void test_uuid_text(void) {
    es_uuid id, back;
    char text[37];
    memset(&id, 0xAB, sizeof id);

    OK(es_uuid_parse("67e55044-10b1-426f-9247-bb680e5fe0c8", &id));
    CHECK(id.bytes[0] == 0x67 && id.bytes[1] == 0xe5 && id.bytes[15] == 0xc8);
    memset(text, 'x', sizeof text);
    es_uuid_format(&id, text);
    CHECK(strcmp(text, "67e55044-10b1-426f-9247-bb680e5fe0c8") == 0);
    /* Upper case is accepted; formatting is lower case. */
    OK(es_uuid_parse("67E55044-10B1-426F-9247-BB680E5FE0C8", &back));
    CHECK(memcmp(&id, &back, sizeof id) == 0);

    /* Other forms and lengths are rejected and leave *out alone. */
    memcpy(&back, &id, sizeof id);
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_uuid_parse("67e5504410b1426f9247bb680e5fe0c8", &back));
    LAST_ERROR_HAS("es_uuid_parse");
    EXPECT(ES_ERR_INVALID_ARGUMENT,
           es_uuid_parse("{67e55044-10b1-426f-9247-bb680e5fe0c8}", &back));
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_uuid_parse("67e55044-10b1-426f-9247-bb680e5fe0c", &back));
    EXPECT(ES_ERR_INVALID_ARGUMENT,
           es_uuid_parse("67e55044-10b1-426f-9247-bb680e5fe0c8 ", &back));
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_uuid_parse("z7e55044-10b1-426f-9247-bb680e5fe0c8", &back));
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_uuid_parse("", &back));
    CHECK(memcmp(&id, &back, sizeof id) == 0);

    /* NULL for each pointer argument. */
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_uuid_parse(NULL, &back));
    LAST_ERROR_HAS("text is NULL");
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_uuid_parse("67e55044-10b1-426f-9247-bb680e5fe0c8", NULL));
    LAST_ERROR_HAS("out is NULL");
    memset(text, 'x', sizeof text);
    es_uuid_format(NULL, text);
    CHECK(text[0] == '\0');
    LAST_ERROR_HAS("id is NULL");
    es_uuid_format(&id, NULL); /* nothing to write to: a no-op */
    LAST_ERROR_HAS("out is NULL");

    /* The nil UUID round-trips too. */
    memset(&id, 0, sizeof id);
    es_uuid_format(&id, text);
    CHECK(strcmp(text, "00000000-0000-0000-0000-000000000000") == 0);
}

static void test_open_arguments(void) {
    es_store *store = GARBAGE;
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_open(NULL, &store));
    CHECK(store == NULL); /* a failing es_open sets *out_store = NULL */
    LAST_ERROR_HAS("es_open");
    LAST_ERROR_HAS("path is NULL");
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_open(store_path, NULL));
    LAST_ERROR_HAS("out_store is NULL");
    es_close(NULL); /* a no-op */
}

/* Appends and the optimistic-concurrency rules. */
static void test_append(es_store *store) {
    es_uuid a = make_uuid(0xA0, 1), b = make_uuid(0xB0, 2), c = make_uuid(0xC0, 3);
    es_proposed_event ev[3];
    es_append_result r;
    int64_t expected = 99, actual = 99;
    char a_text[37];
    es_uuid_format(&a, a_text);

    ev[0] = make_event("OrderPlaced", "{\"total\": 42}");
    ev[1] = make_event("OrderPaid", "paid");
    ev[1].metadata = (const uint8_t *)"meta";
    ev[1].metadata_len = 4;
    ev[2] = make_event("OrderShipped", NULL); /* NULL payload with length 0 */

    memset(&r, 0xFF, sizeof r);
    OK(es_append(store, &a, ES_EXPECTED_NO_STREAM, ev, 2, &r));
    CHECK(r.first_global_position == 0 && r.first_stream_version == 0 && r.count == 2);
    OK(es_append(store, &a, 1, &ev[2], 1, &r));
    CHECK(r.first_global_position == 2 && r.first_stream_version == 2 && r.count == 1);
    OK(es_append(store, &a, ES_EXPECTED_STREAM_EXISTS, ev, 1, NULL)); /* out_result NULL */
    OK(es_append(store, &a, ES_EXPECTED_ANY, ev, 1, &r));
    CHECK(r.first_global_position == 4 && r.first_stream_version == 4 && r.count == 1);
    OK(es_append(store, &b, ES_EXPECTED_ANY, ev, 3, &r));
    CHECK(r.first_global_position == 5 && r.first_stream_version == 0 && r.count == 3);
    CHECK(es_global_position(store) == 8);

    /* Version conflicts: nothing written, message and es_last_conflict name them. */
    memset(&r, 0x5A, sizeof r);
    EXPECT(ES_ERR_WRONG_EXPECTED_VERSION, es_append(store, &a, ES_EXPECTED_NO_STREAM, ev, 1, &r));
    CHECK(r.count == 0x5A5A5A5A5A5A5A5AULL); /* outputs are written only on success */
    LAST_ERROR_HAS("es_append");
    LAST_ERROR_HAS(a_text);
    LAST_ERROR_HAS("expected no stream");
    LAST_ERROR_HAS("actual version 4");
    OK(es_last_conflict(&expected, &actual));
    CHECK(expected == ES_EXPECTED_NO_STREAM && actual == 4);
    /* es_last_conflict leaves the last error as it was, and takes NULL outputs. */
    LAST_ERROR_HAS("actual version 4");
    expected = 99;
    OK(es_last_conflict(NULL, NULL));
    OK(es_last_conflict(&expected, NULL));
    CHECK(expected == ES_EXPECTED_NO_STREAM);
    actual = 99;
    OK(es_last_conflict(NULL, &actual));
    CHECK(actual == 4);

    EXPECT(ES_ERR_WRONG_EXPECTED_VERSION, es_append(store, &a, 3, ev, 1, NULL));
    LAST_ERROR_HAS("expected version 3, actual version 4");
    OK(es_last_conflict(&expected, &actual));
    CHECK(expected == 3 && actual == 4);
    {
        es_uuid conflicted;
        OK(es_last_conflict_stream(conflicted.bytes));
        CHECK(memcmp(conflicted.bytes, a.bytes, 16) == 0);
    }
    EXPECT(ES_ERR_WRONG_EXPECTED_VERSION, es_append(store, &c, ES_EXPECTED_STREAM_EXISTS, ev, 1, NULL));
    LAST_ERROR_HAS("actual no stream");
    OK(es_last_conflict(&expected, &actual));
    CHECK(expected == ES_EXPECTED_STREAM_EXISTS && actual == -1);
    EXPECT(ES_ERR_WRONG_EXPECTED_VERSION, es_append(store, &c, 0, ev, 1, NULL));
    OK(es_last_conflict(&expected, &actual));
    CHECK(expected == 0 && actual == -1);
    CHECK(es_global_position(store) == 8);

    /* A success leaves the last error (and es_last_conflict) as they were. */
    OK(es_append(store, &c, ES_EXPECTED_NO_STREAM, ev, 1, NULL));
    LAST_ERROR_HAS("actual no stream");
    OK(es_last_conflict(&expected, &actual));
    CHECK(es_global_position(store) == 9);

    /* Any other failure ends es_last_conflict's answer. */
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_append(store, &c, -3, ev, 1, NULL));
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_last_conflict(&expected, &actual));
    {
        es_uuid untouched;
        memset(untouched.bytes, 0x77, 16);
        EXPECT(ES_ERR_INVALID_ARGUMENT, es_last_conflict_stream(untouched.bytes));
        CHECK(untouched.bytes[0] == 0x77 && untouched.bytes[15] == 0x77);
    }
    LAST_ERROR_HAS("expected_version -3");
}

/* Every argument check of es_append; none of them writes anything. */
static void test_append_arguments(es_store *store) {
    es_uuid s = make_uuid(0xD0, 4);
    es_proposed_event ev = make_event("T", "x"), bad[2];
    es_append_result r;
    char type[ES_MAX_EVENT_TYPE_LEN + 1];
    uint64_t before = es_global_position(store);

    EXPECT(ES_ERR_INVALID_ARGUMENT, es_append(NULL, &s, ES_EXPECTED_ANY, &ev, 1, &r));
    LAST_ERROR_HAS("store is NULL");
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_append(store, NULL, ES_EXPECTED_ANY, &ev, 1, &r));
    LAST_ERROR_HAS("stream_id is NULL");
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_append(store, &s, ES_EXPECTED_ANY, NULL, 1, &r));
    LAST_ERROR_HAS("events is NULL");
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_append(store, &s, ES_EXPECTED_ANY, &ev, 0, &r));
    LAST_ERROR_HAS("count is 0");
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_append(store, &s, ES_EXPECTED_ANY, NULL, 0, &r));

    /* Expected versions: -1, -2, -4 and >= 0 only. */
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_append(store, &s, -3, &ev, 1, &r));
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_append(store, &s, -5, &ev, 1, &r));
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_append(store, &s, INT64_MIN, &ev, 1, &r));

    /* Event types: not NULL, not empty, at most ES_MAX_EVENT_TYPE_LEN, UTF-8. */
    bad[0] = ev;
    bad[1] = ev;
    bad[1].event_type = NULL;
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_append(store, &s, ES_EXPECTED_ANY, bad, 2, &r));
    LAST_ERROR_HAS("events[1].event_type is NULL");
    bad[1].event_type_len = 0;
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_append(store, &s, ES_EXPECTED_ANY, bad, 2, &r));
    bad[1].event_type = "T";
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_append(store, &s, ES_EXPECTED_ANY, bad, 2, &r));
    LAST_ERROR_HAS("empty");
    memset(type, 'a', sizeof type);
    bad[1].event_type = type;
    bad[1].event_type_len = ES_MAX_EVENT_TYPE_LEN + 1;
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_append(store, &s, ES_EXPECTED_ANY, bad, 2, &r));
    LAST_ERROR_HAS("257");
    bad[1].event_type = "caf\xc3"; /* a truncated UTF-8 sequence */
    bad[1].event_type_len = 4;
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_append(store, &s, ES_EXPECTED_ANY, bad, 2, &r));
    LAST_ERROR_HAS("UTF-8");
    bad[1].event_type = "\xff";
    bad[1].event_type_len = 1;
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_append(store, &s, ES_EXPECTED_ANY, bad, 2, &r));

    /* NULL metadata or payload only with length 0. */
    bad[1] = ev;
    bad[1].metadata = NULL;
    bad[1].metadata_len = 1;
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_append(store, &s, ES_EXPECTED_ANY, bad, 2, &r));
    LAST_ERROR_HAS("metadata is NULL");
    bad[1] = ev;
    bad[1].payload = NULL;
    bad[1].payload_len = 3;
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_append(store, &s, ES_EXPECTED_ANY, bad, 2, &r));
    LAST_ERROR_HAS("payload is NULL");
    CHECK(es_global_position(store) == before); /* all or nothing */
    {
        uint64_t v;
        EXPECT(ES_ERR_STREAM_NOT_FOUND, es_stream_version(store, &s, &v));
    }

    /* The boundaries that are allowed. */
    bad[1].payload = NULL;
    bad[1].payload_len = 0;
    bad[1].metadata = NULL;
    bad[1].metadata_len = 0;
    bad[1].event_type = type; /* exactly ES_MAX_EVENT_TYPE_LEN bytes, not NUL-terminated */
    bad[1].event_type_len = ES_MAX_EVENT_TYPE_LEN;
    OK(es_append(store, &s, ES_EXPECTED_NO_STREAM, bad, 2, &r));
    CHECK(r.count == 2);
    bad[0].event_type = "Prefix-not-terminated";
    bad[0].event_type_len = 6;       /* "Prefix" */
    bad[1].event_type = "caf\xc3\xa9 \xe2\x82\xac"; /* "café €" in UTF-8 */
    bad[1].event_type_len = 9;
    OK(es_append(store, &s, 1, bad, 2, &r));
    CHECK(r.first_stream_version == 2 && r.first_global_position == before + 2);
    CHECK(es_global_position(store) == before + 4);
    {
        es_events got = {NULL, 0, NULL};
        OK(es_read_stream(store, &s, 1, 10, &got));
        CHECK(got.len == 3);
        CHECK(got.items[0].event_type_len == ES_MAX_EVENT_TYPE_LEN);
        CHECK(strlen(got.items[0].event_type) == ES_MAX_EVENT_TYPE_LEN);
        CHECK(got.items[0].payload_len == 0 && got.items[0].metadata_len == 0);
        CHECK(strcmp(got.items[1].event_type, "Prefix") == 0);
        CHECK(strcmp(got.items[2].event_type, "caf\xc3\xa9 \xe2\x82\xac") == 0);
        es_free(&got);
    }
}

/* ES_ERR_EVENT_TOO_LARGE at exactly the documented rule. */
static void test_event_too_large(es_store *store) {
    es_uuid s = make_uuid(0xE0, 5);
    size_t type_len = 4, meta_len = 10;
    size_t fits = ES_MAX_EVENT_SIZE - ES_RECORD_OVERHEAD - type_len - meta_len;
    uint8_t *payload = calloc(fits + 1, 1);
    es_proposed_event ev[2];
    es_events got = {NULL, 0, NULL};
    uint64_t before = es_global_position(store);
    CHECK(payload != NULL);
    ev[0] = make_event("Big!", NULL);
    ev[0].metadata = (const uint8_t *)"0123456789";
    ev[0].metadata_len = meta_len;
    ev[0].payload = payload;
    ev[0].payload_len = fits + 1;
    ev[1] = make_event("Small", "s");

    /* One byte over: refused, and the whole batch with it. */
    EXPECT(ES_ERR_EVENT_TOO_LARGE, es_append(store, &s, ES_EXPECTED_ANY, ev, 2, NULL));
    LAST_ERROR_HAS("es_append");
    LAST_ERROR_HAS("65537");
    LAST_ERROR_HAS("65536");
    CHECK(es_global_position(store) == before);
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_last_conflict(NULL, NULL));

    /* Exactly ES_MAX_EVENT_SIZE: accepted, and read back whole. */
    ev[0].payload_len = fits;
    payload[fits - 1] = 0x7F;
    OK(es_append(store, &s, ES_EXPECTED_NO_STREAM, ev, 2, NULL));
    CHECK(es_global_position(store) == before + 2);
    OK(es_read_stream(store, &s, 0, 1, &got));
    CHECK(got.len == 1);
    CHECK(ES_RECORD_OVERHEAD + got.items[0].event_type_len + got.items[0].metadata_len +
              got.items[0].payload_len == ES_MAX_EVENT_SIZE);
    CHECK(got.items[0].payload[fits - 1] == 0x7F);
    CHECK(memcmp(got.items[0].metadata, "0123456789", meta_len) == 0);
    es_free(&got);
    free(payload);
}

static void check_event(const es_event *e, uint64_t position, const es_uuid *stream,
                        uint64_t version, const char *type, const char *payload) {
    CHECK(e->global_position == position);
    CHECK(e->stream_version == version);
    CHECK(memcmp(&e->stream_id, stream, sizeof *stream) == 0);
    CHECK(e->event_type_len == strlen(type));
    CHECK(memcmp(e->event_type, type, e->event_type_len) == 0);
    CHECK(e->event_type[e->event_type_len] == '\0'); /* NUL-terminated */
    CHECK(strcmp(e->event_type, type) == 0);
    CHECK(e->payload_len == (payload ? strlen(payload) : 0));
    CHECK(e->payload != NULL && e->metadata != NULL);
    if (payload) {
        CHECK(memcmp(e->payload, payload, e->payload_len) == 0);
    }
    CHECK(e->recorded_at_us > 1500000000000000ULL); /* after 2017, in microseconds */
}

static int uuid_is_nil(const es_uuid *id) {
    static const es_uuid nil;
    return memcmp(id, &nil, sizeof nil) == 0;
}

static void test_reads(es_store *store) {
    es_uuid a = make_uuid(0xA0, 1), b = make_uuid(0xB0, 2), missing = make_uuid(0xFF, 9);
    es_events got = {NULL, 0, NULL};
    uint64_t v = 12345;
    size_t i;

    OK(es_read_stream(store, &a, 0, UINT64_MAX, &got));
    CHECK(got.len == 5 && got.items != NULL && got.owner != NULL);
    check_event(&got.items[0], 0, &a, 0, "OrderPlaced", "{\"total\": 42}");
    check_event(&got.items[1], 1, &a, 1, "OrderPaid", "paid");
    CHECK(got.items[1].metadata_len == 4 && memcmp(got.items[1].metadata, "meta", 4) == 0);
    check_event(&got.items[2], 2, &a, 2, "OrderShipped", NULL);
    check_event(&got.items[3], 3, &a, 3, "OrderPlaced", "{\"total\": 42}");
    check_event(&got.items[4], 4, &a, 4, "OrderPlaced", "{\"total\": 42}");
    /* One append, one commit time; and the library assigned distinct ids. */
    CHECK(got.items[0].recorded_at_us == got.items[1].recorded_at_us);
    CHECK(got.items[2].recorded_at_us >= got.items[1].recorded_at_us);
    for (i = 0; i < got.len; i++) {
        CHECK(!uuid_is_nil(&got.items[i].event_id));
    }
    CHECK(memcmp(&got.items[0].event_id, &got.items[1].event_id, sizeof(es_uuid)) != 0);
    es_free(&got);
    CHECK(got.items == NULL && got.len == 0 && got.owner == NULL);

    /* Ranges: from a version, at most max_count, past the end, max_count 0. */
    OK(es_read_stream(store, &a, 3, 1, &got));
    CHECK(got.len == 1 && got.items[0].stream_version == 3);
    es_free(&got);
    OK(es_read_stream(store, &a, 5, 10, &got));
    CHECK(got.len == 0 && got.items == NULL && got.owner == NULL);
    es_free(&got);
    OK(es_read_stream(store, &a, UINT64_MAX, UINT64_MAX, &got));
    CHECK(got.len == 0);
    OK(es_read_stream(store, &a, 0, 0, &got));
    CHECK(got.len == 0 && got.items == NULL);
    es_free(&got);

    /* Streams with no events, whatever max_count; *out_events set to the empty value. */
    got.items = GARBAGE;
    got.len = 7;
    got.owner = GARBAGE;
    EXPECT(ES_ERR_STREAM_NOT_FOUND, es_read_stream(store, &missing, 0, 10, &got));
    CHECK(got.items == NULL && got.len == 0 && got.owner == NULL);
    LAST_ERROR_HAS("es_read_stream");
    LAST_ERROR_HAS("not found");
    EXPECT(ES_ERR_STREAM_NOT_FOUND, es_read_stream(store, &missing, 0, 0, &got));
    es_free(&got); /* safe after a failing read */

    /* NULL for each pointer argument. */
    got.items = GARBAGE;
    got.owner = GARBAGE;
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_read_stream(NULL, &a, 0, 10, &got));
    CHECK(got.items == NULL && got.owner == NULL);
    LAST_ERROR_HAS("store is NULL");
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_read_stream(store, NULL, 0, 10, &got));
    LAST_ERROR_HAS("stream_id is NULL");
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_read_stream(store, &a, 0, 10, NULL));
    LAST_ERROR_HAS("out_events is NULL");
    got.items = GARBAGE;
    got.owner = GARBAGE;
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_read_all(NULL, 0, 10, &got));
    CHECK(got.items == NULL && got.owner == NULL);
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_read_all(store, 0, 10, NULL));
    LAST_ERROR_HAS("es_read_all");

    /* The whole log, paged: positions are contiguous. */
    {
        uint64_t next = 0, total = es_global_position(store);
        for (;;) {
            OK(es_read_all(store, next, 3, &got));
            for (i = 0; i < got.len; i++) {
                CHECK(got.items[i].global_position == next + i);
            }
            next += got.len;
            if (got.len < 3) {
                es_free(&got);
                break;
            }
            es_free(&got);
        }
        CHECK(next == total);
        OK(es_read_all(store, 5, 3, &got));
        check_event(&got.items[0], 5, &b, 0, "OrderPlaced", "{\"total\": 42}");
        check_event(&got.items[2], 7, &b, 2, "OrderShipped", NULL);
        es_free(&got);
        OK(es_read_all(store, total, 10, &got));
        CHECK(got.len == 0 && got.items == NULL);
        OK(es_read_all(store, UINT64_MAX, UINT64_MAX, &got));
        CHECK(got.len == 0);
        OK(es_read_all(store, 0, 0, &got));
        CHECK(got.len == 0);
    }

    /* es_stream_version */
    OK(es_stream_version(store, &a, &v));
    CHECK(v == 4);
    OK(es_stream_version(store, &b, &v));
    CHECK(v == 2);
    v = 12345;
    EXPECT(ES_ERR_STREAM_NOT_FOUND, es_stream_version(store, &missing, &v));
    CHECK(v == 12345);
    LAST_ERROR_HAS("es_stream_version");
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_stream_version(NULL, &a, &v));
    LAST_ERROR_HAS("store is NULL");
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_stream_version(store, NULL, &v));
    LAST_ERROR_HAS("stream_id is NULL");
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_stream_version(store, &a, NULL));
    LAST_ERROR_HAS("out_version is NULL");
    CHECK(v == 12345);

    /* es_global_position(NULL) is 0 and says why. */
    CHECK(es_global_position(NULL) == 0);
    LAST_ERROR_HAS("es_global_position: invalid argument: store is NULL");
}

/* Read results own their memory: es_free twice, and results used after es_close. */
static void test_ownership(void) {
    es_store *store = NULL;
    es_events stream = {NULL, 0, NULL}, all = {NULL, 0, NULL}, copy;
    es_uuid a = make_uuid(0xA0, 1);
    uint64_t total;
    size_t i;

    OK(es_open(store_path, &store));
    CHECK(store != NULL);
    total = es_global_position(store);
    OK(es_read_stream(store, &a, 0, 100, &stream));
    OK(es_read_all(store, 0, 1000, &all));
    es_close(store);

    /* After es_close: every byte still readable and right. */
    CHECK(stream.len == 5);
    check_event(&stream.items[1], 1, &a, 1, "OrderPaid", "paid");
    CHECK(memcmp(stream.items[1].metadata, "meta", 4) == 0);
    CHECK(all.len == total);
    for (i = 0; i < all.len; i++) {
        CHECK(all.items[i].global_position == i);
        CHECK(strlen(all.items[i].event_type) == all.items[i].event_type_len);
    }
    es_free(&stream);
    es_free(&stream); /* idempotent */
    CHECK(stream.items == NULL && stream.len == 0 && stream.owner == NULL);
    copy = all;
    es_free(&all);
    CHECK(all.items == NULL && all.owner == NULL);
    (void)copy; /* freeing `copy` now would be a double free, as documented */
    es_free(NULL);
}

/* What was acknowledged is there after close and reopen. */
static void test_reopen(void) {
    es_store *store = NULL;
    es_uuid a = make_uuid(0xA0, 1);
    uint64_t v = 0;
    OK(es_open(store_path, &store));
    OK(es_stream_version(store, &a, &v));
    CHECK(v == 4);
    {
        uint64_t total = es_global_position(store);
        es_proposed_event ev = make_event("Reopened", "again");
        es_append_result r;
        CHECK(total > 10);
        OK(es_append(store, &a, 4, &ev, 1, &r));
        CHECK(r.first_global_position == total && r.first_stream_version == 5);
    }
    es_close(store);
}

int main(int argc, char **argv) {
    es_store *store = NULL;
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    join_path(store_path, sizeof store_path, argv[1], "api.store");
    remove(store_path);

    /* Before any failing call, the last error is the empty string (never NULL). */
    CHECK(es_last_error() != NULL && es_last_error()[0] == '\0');
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_last_conflict(NULL, NULL));

    test_versions();
    test_status_names();
    test_constants();
    test_uuid_text();
    test_open_arguments();

    OK(es_open(store_path, &store));
    CHECK(store != NULL);
    CHECK(es_global_position(store) == 0);
    test_append(store);
    test_append_arguments(store);
    test_event_too_large(store);
    test_reads(store);
    es_close(store);

    test_ownership();
    test_reopen();
    report_passed("test_api");
    return 0;
}
