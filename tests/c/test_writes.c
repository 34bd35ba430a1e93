/*
 * test_writes.c: the 0.2 write and lookup calls from C (issue 11): idempotent retries
 * (after reopen, with a stale expected version, racing from 8 threads), duplicate ids,
 * es_append_multi (results, a conflict on its second stream reported by
 * es_last_conflict, argument checks), es_read_event, backward reads at both ends and
 * past them, es_list_streams paging with es_free_streams, and the 0.1 store of
 * tests/fixtures opened, read, retried and upgraded to format 2.
 *
 * Usage: test_writes DIR
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void count_check(void);
#define COUNT_CHECK() count_check()
#include "check.h"

/* A non-NULL owner, to check that failing reads reset their output. */
#define GARBAGE_OWNER ((void *)(uintptr_t)0x1)

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char store_path[4096];

static void count_check(void) {
    pthread_mutex_lock(&lock);
    checks_run++;
    pthread_mutex_unlock(&lock);
}

/* An event with a chosen id. */
static es_proposed_event with_id(const char *type, const char *payload, unsigned char tag,
                                 unsigned n) {
    es_proposed_event e = make_event(type, payload);
    e.event_id = make_uuid(tag, (unsigned char)n);
    e.event_id.bytes[14] = (unsigned char)(n >> 8);
    return e;
}

static int same_result(const es_append_result *a, const es_append_result *b) {
    return a->first_global_position == b->first_global_position &&
           a->first_stream_version == b->first_stream_version && a->count == b->count;
}

static int is_empty(const es_events *e) {
    return e->items == NULL && e->len == 0 && e->owner == NULL;
}

static void test_layouts_and_statuses(void) {
    CHECK(ES_ERR_DUPLICATE_EVENT_ID == 12 && ES_ERR_EVENT_NOT_FOUND == 13);
    CHECK(strcmp(es_status_name(12), "ES_ERR_DUPLICATE_EVENT_ID") == 0);
    CHECK(strcmp(es_status_name(13), "ES_ERR_EVENT_NOT_FOUND") == 0);
    CHECK(sizeof(es_append_result) == 32);
    CHECK(sizeof(es_stream_info) == 40);
}

static void test_retries(void) {
    es_store *store = NULL;
    es_uuid s = make_uuid(0x11, 1);
    es_proposed_event ev[2];
    es_append_result first, again;
    char id_text[37];
    uint64_t end;

    remove(store_path);
    OK(es_open(store_path, &store));
    ev[0] = with_id("Opened", "a", 0xE1, 1);
    ev[1] = with_id("Named", "b", 0xE1, 2);
    memset(&first, 0xff, sizeof first);
    OK(es_append(store, &s, ES_EXPECTED_NO_STREAM, ev, 2, &first));
    CHECK(first.first_global_position == 0 && first.count == 2 && first.deduplicated == 0);

    /* The retry of a success is a success, whatever the expected version says now. */
    memset(&again, 0xff, sizeof again);
    OK(es_append(store, &s, ES_EXPECTED_NO_STREAM, ev, 2, &again));
    CHECK(same_result(&first, &again) && again.deduplicated == 1);
    CHECK(es_global_position(store) == 2);

    /* After reopen too, and as a one-entry multi-append. */
    es_close(store);
    OK(es_open(store_path, &store));
    OK(es_append(store, &s, 7, ev, 2, &again));
    CHECK(same_result(&first, &again) && again.deduplicated == 1);
    {
        es_stream_append one;
        one.stream_id = s;
        one.expected_version = ES_EXPECTED_ANY;
        one.events = ev;
        one.count = 2;
        memset(&again, 0, sizeof again);
        OK(es_append_multi(store, &one, 1, &again));
        CHECK(same_result(&first, &again) && again.deduplicated == 1);
    }
    end = es_global_position(store);
    CHECK(end == 2);

    /* A partial overlap is a duplicate naming the id; nothing is written. */
    ev[0] = with_id("Other", "c", 0xE1, 3);
    EXPECT(ES_ERR_DUPLICATE_EVENT_ID, es_append(store, &s, ES_EXPECTED_ANY, ev, 2, &again));
    es_uuid_format(&ev[1].event_id, id_text);
    LAST_ERROR_HAS(id_text);
    LAST_ERROR_HAS("es_append");
    CHECK(es_global_position(store) == end);

    /* The same id twice in one call. */
    ev[1] = ev[0];
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_append(store, &s, ES_EXPECTED_ANY, ev, 2, NULL));
    LAST_ERROR_HAS("twice");
    CHECK(es_global_position(store) == end);
    es_close(store);
}

static void test_multi(void) {
    es_store *store = NULL;
    es_uuid a = make_uuid(0x21, 1), b = make_uuid(0x21, 2);
    es_proposed_event ea[2], eb[1], eb2[1];
    es_stream_append parts[2];
    es_append_result results[2];
    int64_t expected = 0, actual = 0;
    char text[37];
    es_events read = {NULL, 0, NULL};
    es_uuid conflicted;

    remove(store_path);
    OK(es_open(store_path, &store));
    eb[0] = with_id("B0", "b0", 0xE2, 1);
    OK(es_append(store, &b, ES_EXPECTED_NO_STREAM, eb, 1, NULL));

    ea[0] = with_id("A0", "a0", 0xE2, 2);
    ea[1] = with_id("A1", "a1", 0xE2, 3);
    eb2[0] = with_id("B1", "b1", 0xE2, 4);
    parts[0].stream_id = a;
    parts[0].expected_version = ES_EXPECTED_NO_STREAM;
    parts[0].events = ea;
    parts[0].count = 2;
    parts[1].stream_id = b;
    parts[1].expected_version = 5; /* wrong: b is at version 0 */
    parts[1].events = eb2;
    parts[1].count = 1;

    /* A conflict on the second stream writes nothing and names that stream. */
    EXPECT(ES_ERR_WRONG_EXPECTED_VERSION, es_append_multi(store, parts, 2, results));
    es_uuid_format(&b, text);
    LAST_ERROR_HAS(text);
    LAST_ERROR_HAS("es_append_multi");
    OK(es_last_conflict(&expected, &actual));
    CHECK(expected == 5 && actual == 0);
    /* ... and es_last_conflict_stream gives that stream's bytes, leaving the error. */
    memset(conflicted.bytes, 0, sizeof conflicted.bytes);
    OK(es_last_conflict_stream(conflicted.bytes));
    CHECK(memcmp(conflicted.bytes, b.bytes, 16) == 0);
    LAST_ERROR_HAS("es_append_multi");
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_last_conflict_stream(NULL));
    LAST_ERROR_HAS("es_append_multi");
    CHECK(es_global_position(store) == 1);
    EXPECT(ES_ERR_STREAM_NOT_FOUND, es_read_stream(store, &a, 0, 10, &read));

    parts[1].expected_version = 0;
    memset(results, 0xff, sizeof results);
    OK(es_append_multi(store, parts, 2, results));
    CHECK(results[0].first_global_position == 1 && results[0].first_stream_version == 0);
    CHECK(results[0].count == 2 && results[0].deduplicated == 0);
    CHECK(results[1].first_global_position == 3 && results[1].first_stream_version == 1);
    CHECK(results[1].count == 1 && results[1].deduplicated == 0);
    OK(es_read_all(store, 0, 100, &read));
    CHECK(read.len == 4 && read.items[1].recorded_at_us == read.items[3].recorded_at_us);
    CHECK(memcmp(read.items[2].stream_id.bytes, a.bytes, 16) == 0);
    CHECK(memcmp(read.items[3].stream_id.bytes, b.bytes, 16) == 0);
    es_free(&read);

    /* Its retry, NULL results allowed. */
    OK(es_append_multi(store, parts, 2, NULL));
    OK(es_append_multi(store, parts, 2, results));
    CHECK(results[0].deduplicated == 1 && results[1].deduplicated == 1);
    CHECK(results[1].first_global_position == 3);
    CHECK(es_global_position(store) == 4);

    /* Arguments. */
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_append_multi(NULL, parts, 2, NULL));
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_append_multi(store, NULL, 2, NULL));
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_append_multi(store, parts, 0, NULL));
    parts[1].stream_id = a;
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_append_multi(store, parts, 2, NULL));
    LAST_ERROR_HAS("twice");
    parts[1].stream_id = b;
    parts[1].count = 0;
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_append_multi(store, parts, 2, NULL));
    parts[1].count = 1;
    parts[1].events = NULL;
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_append_multi(store, parts, 2, NULL));
    parts[1].events = eb2;
    parts[1].expected_version = -3;
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_append_multi(store, parts, 2, NULL));
    LAST_ERROR_HAS("appends[1].expected_version");
    CHECK(es_global_position(store) == 4);
    es_close(store);
}

#define RACERS 8
#define ROUNDS 10
static es_store *race_store;
static pthread_barrier_t race_barrier;
static es_append_result race_results[RACERS][2];

static void *racer(void *arg) {
    int t = (int)(intptr_t)arg, round;
    for (round = 0; round < ROUNDS; round++) {
        es_proposed_event ea[2], eb[1];
        es_stream_append parts[2];
        ea[0] = with_id("A", "a", 0xE3, (unsigned)round * 3 + 1);
        ea[1] = with_id("A", "a", 0xE3, (unsigned)round * 3 + 2);
        eb[0] = with_id("B", "b", 0xE3, (unsigned)round * 3 + 3);
        parts[0].stream_id = make_uuid(0x31, (unsigned char)(round * 2));
        parts[0].expected_version = ES_EXPECTED_NO_STREAM;
        parts[0].events = ea;
        parts[0].count = 2;
        parts[1].stream_id = make_uuid(0x31, (unsigned char)(round * 2 + 1));
        parts[1].expected_version = ES_EXPECTED_NO_STREAM;
        parts[1].events = eb;
        parts[1].count = 1;
        pthread_barrier_wait(&race_barrier);
        OK(es_append_multi(race_store, parts, 2, race_results[t]));
        pthread_barrier_wait(&race_barrier);
        /* Thread 0 judges the round while the others wait. */
        if (t == 0) {
            int i, written = 0;
            for (i = 0; i < RACERS; i++) {
                written += race_results[i][0].deduplicated == 0;
                CHECK(race_results[i][0].deduplicated == race_results[i][1].deduplicated);
                CHECK(same_result(&race_results[i][0], &race_results[0][0]));
                CHECK(same_result(&race_results[i][1], &race_results[0][1]));
            }
            CHECK(written == 1);
        }
        pthread_barrier_wait(&race_barrier);
    }
    return NULL;
}

static void test_racing_retries(void) {
    pthread_t threads[RACERS];
    int i;
    remove(store_path);
    OK(es_open(store_path, &race_store));
    CHECK(pthread_barrier_init(&race_barrier, NULL, RACERS) == 0);
    for (i = 0; i < RACERS; i++) {
        CHECK(pthread_create(&threads[i], NULL, racer, (void *)(intptr_t)i) == 0);
    }
    for (i = 0; i < RACERS; i++) {
        CHECK(pthread_join(threads[i], NULL) == 0);
    }
    pthread_barrier_destroy(&race_barrier);
    CHECK(es_global_position(race_store) == ROUNDS * 3);
    es_close(race_store);
}

static void test_lookups(void) {
    es_store *store = NULL;
    es_uuid s = make_uuid(0x41, 1), t = make_uuid(0x41, 2), nil;
    es_events out = {NULL, 0, NULL};
    es_proposed_event ev[1];
    char payload[16];
    unsigned i;

    memset(&nil, 0, sizeof nil);
    remove(store_path);
    OK(es_open(store_path, &store));
    /* An empty store: backward reads are empty, a stream is not found. */
    out.owner = GARBAGE_OWNER;
    OK(es_read_all_backward(store, UINT64_MAX, 10, &out));
    CHECK(is_empty(&out));
    EXPECT(ES_ERR_STREAM_NOT_FOUND, es_read_stream_backward(store, &s, UINT64_MAX, 10, &out));
    CHECK(is_empty(&out));

    /* Positions 0..9; stream s holds the even ones (versions 0..4), t the odd ones. */
    for (i = 0; i < 10; i++) {
        snprintf(payload, sizeof payload, "p%u", i);
        ev[0] = with_id("E", payload, 0xE4, i + 1);
        OK(es_append(store, i % 2 ? &t : &s, ES_EXPECTED_ANY, ev, 1, NULL));
    }

    OK(es_read_event(store, &ev[0].event_id, &out));
    CHECK(out.len == 1 && out.items[0].global_position == 9);
    CHECK(out.items[0].payload_len == 2 && memcmp(out.items[0].payload, "p9", 2) == 0);
    es_free(&out);
    ev[0] = with_id("E", "", 0xE4, 4);
    OK(es_read_event(store, &ev[0].event_id, &out));
    CHECK(out.len == 1 && out.items[0].global_position == 3);
    CHECK(memcmp(out.items[0].stream_id.bytes, t.bytes, 16) == 0);
    es_free(&out);
    ev[0] = with_id("E", "", 0xE4, 99);
    EXPECT(ES_ERR_EVENT_NOT_FOUND, es_read_event(store, &ev[0].event_id, &out));
    CHECK(is_empty(&out));
    EXPECT(ES_ERR_EVENT_NOT_FOUND, es_read_event(store, &nil, &out));
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_read_event(store, NULL, &out));
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_read_event(NULL, &nil, &out));
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_read_event(store, &nil, NULL));

    OK(es_read_all_backward(store, UINT64_MAX, 3, &out));
    CHECK(out.len == 3 && out.items[0].global_position == 9 && out.items[2].global_position == 7);
    es_free(&out);
    OK(es_read_all_backward(store, 1, 5, &out));
    CHECK(out.len == 2 && out.items[0].global_position == 1 && out.items[1].global_position == 0);
    es_free(&out);
    OK(es_read_all_backward(store, 4, 0, &out));
    CHECK(is_empty(&out));
    OK(es_read_stream_backward(store, &s, UINT64_MAX, UINT64_MAX, &out));
    CHECK(out.len == 5);
    for (i = 0; i < 5; i++) {
        CHECK(out.items[i].stream_version == 4 - i);
        CHECK(out.items[i].global_position == 8 - 2 * i);
    }
    es_free(&out);
    OK(es_read_stream_backward(store, &t, 0, 9, &out));
    CHECK(out.len == 1 && out.items[0].global_position == 1);
    es_free(&out);
    OK(es_read_stream_backward(store, &t, 99, 2, &out));
    CHECK(out.len == 2 && out.items[0].stream_version == 4 && out.items[1].stream_version == 3);
    /* Results outlive the store. */
    es_close(store);
    CHECK(out.items[1].global_position == 7);
    es_free(&out);
    es_free(&out);
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_read_all_backward(NULL, 0, 1, &out));
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_read_stream_backward(NULL, &s, 0, 1, &out));
}

#define STREAMS 1000
#define PER_MULTI 100

static void test_list_streams(void) {
    es_store *store = NULL;
    es_streams page = {NULL, 0, NULL};
    es_proposed_event ev[PER_MULTI];
    es_stream_append parts[PER_MULTI];
    uint64_t from = 0;
    unsigned i, j;

    remove(store_path);
    OK(es_open(store_path, &store));
    OK(es_list_streams(store, 0, 10, &page));
    CHECK(page.items == NULL && page.len == 0 && page.owner == NULL);
    for (i = 0; i < STREAMS / PER_MULTI; i++) {
        for (j = 0; j < PER_MULTI; j++) {
            unsigned n = i * PER_MULTI + j;
            ev[j] = make_event("Created", "x");
            /* Stream ids in an order unrelated to creation order. */
            parts[j].stream_id = make_uuid(0x51, (unsigned char)(255 - n % 256));
            parts[j].stream_id.bytes[1] = (unsigned char)(n / 256);
            parts[j].expected_version = ES_EXPECTED_NO_STREAM;
            parts[j].events = &ev[j];
            parts[j].count = 1;
        }
        OK(es_append_multi(store, parts, PER_MULTI, NULL));
    }
    for (;;) {
        OK(es_list_streams(store, from, 333, &page));
        for (i = 0; i < page.len; i++) {
            uint64_t n = from + i;
            CHECK(page.items[i].stream_id.bytes[15] == (unsigned char)(255 - n % 256));
            CHECK(page.items[i].stream_id.bytes[1] == (unsigned char)(n / 256));
            CHECK(page.items[i].last_version == 0);
            CHECK(page.items[i].first_global_position == n);
            CHECK(page.items[i].last_global_position == n);
        }
        from += page.len;
        if (page.len < 333) {
            break;
        }
        es_free_streams(&page);
    }
    CHECK(from == STREAMS);
    /* A listing outlives the store; freeing is idempotent and NULL-safe. */
    es_close(store);
    CHECK(page.len == STREAMS % 333 && page.items[0].first_global_position == 999);
    es_free_streams(&page);
    CHECK(page.items == NULL && page.len == 0 && page.owner == NULL);
    es_free_streams(&page);
    es_free_streams(NULL);
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_list_streams(NULL, 0, 1, &page));
    CHECK(page.items == NULL && page.owner == NULL);
}

/* A store written by 0.1 (tests/fixtures/v0.1.store, run from the crate's directory as
 * the test harness does) opens and reads under 0.2, stays version 1 after a
 * single-stream append, and becomes version 2 at its first multi-append. */
static int read_byte_6(const char *path) {
    unsigned char head[8];
    FILE *f = fopen(path, "rb");
    size_t n;
    CHECK(f != NULL);
    n = fread(head, 1, sizeof head, f);
    fclose(f);
    CHECK(n == sizeof head);
    return head[6];
}

static void test_store_of_0_1(void) {
    es_store *store = NULL;
    es_events out = {NULL, 0, NULL};
    es_uuid first_id = make_uuid(0, 0x01), a = make_uuid(0, 0xA1), d = make_uuid(0, 0xD4);
    es_proposed_event ev[2];
    es_stream_append parts[2];
    es_append_result r;
    char buf[4096];
    size_t n;
    FILE *in = fopen("tests/fixtures/v0.1.store", "rb"), *out_file;

    CHECK(in != NULL);
    remove(store_path);
    out_file = fopen(store_path, "wb");
    CHECK(out_file != NULL);
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) {
        CHECK(fwrite(buf, 1, n, out_file) == n);
    }
    fclose(in);
    fclose(out_file);
    CHECK(read_byte_6(store_path) == 1);

    first_id.bytes[14] = 0xE0; /* 0xE001 */
    OK(es_open(store_path, &store));
    CHECK(es_global_position(store) == 18);
    OK(es_read_all(store, 0, UINT64_MAX, &out));
    CHECK(out.len == 18);
    CHECK(memcmp(out.items[0].event_id.bytes, first_id.bytes, 16) == 0);
    CHECK(strcmp(out.items[0].event_type, "Type0") == 0);
    CHECK(out.items[0].payload_len == strlen("payload 1 of stream 0 round 0"));
    CHECK(memcmp(out.items[0].payload, "payload 1 of stream 0 round 0", out.items[0].payload_len) ==
          0);
    es_free(&out);
    OK(es_read_event(store, &first_id, &out));
    CHECK(out.len == 1 && out.items[0].global_position == 0);
    es_free(&out);

    /* The retry of its first append (one event on stream 0xA1) is recognised. */
    ev[0] = make_event("Type0", "payload 1 of stream 0 round 0");
    ev[0].event_id = first_id;
    OK(es_append(store, &a, ES_EXPECTED_NO_STREAM, ev, 1, &r));
    CHECK(r.deduplicated == 1 && r.first_global_position == 0);

    /* A single-stream append keeps it version 1; a multi-append makes it version 2. */
    ev[0] = with_id("New", "n", 0xE5, 1);
    OK(es_append(store, &a, ES_EXPECTED_ANY, ev, 1, NULL));
    es_close(store);
    CHECK(read_byte_6(store_path) == 1);
    OK(es_open(store_path, &store));
    ev[0] = with_id("X", "x", 0xE5, 2);
    ev[1] = with_id("Y", "y", 0xE5, 3);
    parts[0].stream_id = a;
    parts[0].expected_version = 6; /* 6 events of 0.1, then "New" */
    parts[0].events = &ev[0];
    parts[0].count = 1;
    parts[1].stream_id = d;
    parts[1].expected_version = ES_EXPECTED_NO_STREAM;
    parts[1].events = &ev[1];
    parts[1].count = 1;
    OK(es_append_multi(store, parts, 2, NULL));
    es_close(store);
    CHECK(read_byte_6(store_path) == 2);
    OK(es_open(store_path, &store));
    CHECK(es_global_position(store) == 21);
    es_close(store);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    join_path(store_path, sizeof store_path, argv[1], "writes.store");
    test_layouts_and_statuses();
    test_retries();
    test_multi();
    test_racing_retries();
    test_lookups();
    test_list_streams();
    test_store_of_0_1();
    report_passed("test_writes");
    return 0;
}
