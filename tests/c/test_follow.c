/*
 * test_follow.c: the 0.2 follow API from C: es_open_with and its flags, read-only
 * handles and ES_ERR_READ_ONLY, es_wait / es_wake (with threads), es_read_all_filtered,
 * subscriptions (catch-up, live, filters, resume), and every NULL / bad-argument rule.
 *
 * Usage: test_follow DIR
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1000.0 + (double)t.tv_nsec / 1e6;
}

static void sleep_ms(long ms) {
    struct timespec t;
    t.tv_sec = ms / 1000;
    t.tv_nsec = (ms % 1000) * 1000000L;
    nanosleep(&t, NULL);
}

static void append_one(es_store *s, es_uuid stream, const char *type) {
    es_proposed_event e = make_event(type, "p");
    OK(es_append(s, &stream, ES_EXPECTED_ANY, &e, 1, NULL));
}

static es_string str(const char *s) {
    es_string r;
    r.ptr = s;
    r.len = strlen(s);
    return r;
}

/* --- es_wait from another thread --------------------------------------------- */

struct waiter {
    const es_store *store;
    uint64_t position;
    int64_t timeout_ms;
    es_status status;
    uint64_t result;
};

static void *wait_thread(void *arg) {
    struct waiter *w = (struct waiter *)arg;
    w->status = es_wait(w->store, w->position, w->timeout_ms, &w->result);
    return NULL;
}

struct next_args {
    es_subscription *sub;
    es_status status;
    es_events events;
};

static void *next_thread(void *arg) {
    struct next_args *a = (struct next_args *)arg;
    a->status = es_subscription_next(a->sub, 10, -1, &a->events);
    return NULL;
}

static void open_with_rules(const char *dir) {
    char path[4096], missing[4096];
    es_store *s = (es_store *)1, *ro = NULL;
    join_path(path, sizeof path, dir, "open.store");
    join_path(missing, sizeof missing, dir, "missing.store");

    /* Unknown flag bits, NULL arguments. */
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_open_with(path, 4u, &s));
    CHECK(s == NULL);
    LAST_ERROR_HAS("unknown bits");
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_open_with(NULL, 0, &s));
    CHECK(s == NULL);
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_open_with(path, 0, NULL));

    /* A read-only open creates nothing; MUST_EXIST refuses a missing store. */
    s = (es_store *)1;
    EXPECT(ES_ERR_IO, es_open_with(missing, ES_OPEN_READ_ONLY, &s));
    CHECK(s == NULL);
    EXPECT(ES_ERR_IO, es_open_with(missing, ES_OPEN_MUST_EXIST, &s));
    CHECK(s == NULL);
    CHECK(fopen(missing, "r") == NULL);

    /* Flags 0 is es_open; a reader opens beside the writer and refuses appends. */
    OK(es_open_with(path, 0, &s));
    append_one(s, make_uuid(1, 1), "A");
    OK(es_open_with(path, ES_OPEN_READ_ONLY | ES_OPEN_MUST_EXIST, &ro));
    CHECK(es_global_position(ro) == 1);
    {
        es_store_info info;
        OK(es_store_info_get(ro, &info));
        CHECK(info.read_only == 1 && info.event_count == 1 && info.poisoned == 0);
        CHECK(info.recovered_bytes_dropped == 0);
        OK(es_store_info_get(s, &info));
        CHECK(info.read_only == 0 && info.event_count == 1);
    }
    {
        es_uuid id = make_uuid(1, 1);
        es_proposed_event e = make_event("B", "x");
        EXPECT(ES_ERR_READ_ONLY, es_append(ro, &id, ES_EXPECTED_ANY, &e, 1, NULL));
        LAST_ERROR_HAS("read-only");
        CHECK(strcmp(es_status_name(ES_ERR_READ_ONLY), "ES_ERR_READ_ONLY") == 0);
        CHECK(ES_ERR_READ_ONLY == 11);
    }
    /* A second writer is still locked out; a second reader is not. */
    {
        es_store *w2 = (es_store *)1, *ro2 = NULL;
        EXPECT(ES_ERR_LOCKED, es_open_with(path, 0, &w2));
        CHECK(w2 == NULL);
        OK(es_open_with(path, ES_OPEN_READ_ONLY, &ro2));
        es_close(ro2);
    }
    append_one(s, make_uuid(1, 1), "B");
    CHECK(es_global_position(ro) == 2);
    es_close(ro);
    es_close(s);

    /* A read-only handle judges the file as a writer does, and changes nothing. */
    {
        char garbage[4096];
        FILE *f;
        long len;
        unsigned char byte;
        join_path(garbage, sizeof garbage, dir, "garbage.store");
        f = fopen(garbage, "wb");
        CHECK(f != NULL);
        CHECK(fputs("this is not an event store, not at all; far too long", f) >= 0);
        CHECK(fclose(f) == 0);
        s = (es_store *)1;
        EXPECT(ES_ERR_INVALID_HEADER, es_open_with(garbage, ES_OPEN_READ_ONLY, &s));
        CHECK(s == NULL);
        /* A flipped byte in the first batch, with a valid batch after it. */
        f = fopen(path, "r+b");
        CHECK(f != NULL);
        CHECK(fseek(f, 0, SEEK_END) == 0);
        len = ftell(f);
        CHECK(fseek(f, 40, SEEK_SET) == 0);
        CHECK(fread(&byte, 1, 1, f) == 1);
        byte ^= 0xff;
        CHECK(fseek(f, 40, SEEK_SET) == 0);
        CHECK(fwrite(&byte, 1, 1, f) == 1);
        CHECK(fclose(f) == 0);
        EXPECT(ES_ERR_CORRUPT_RECORD, es_open_with(path, ES_OPEN_READ_ONLY, &s));
        CHECK(s == NULL);
        f = fopen(path, "rb");
        CHECK(f != NULL && fseek(f, 0, SEEK_END) == 0 && ftell(f) == len);
        CHECK(fclose(f) == 0);
    }
}

static void wait_and_wake(const char *dir) {
    char path[4096];
    es_store *w = NULL, *r = NULL;
    uint64_t pos = 99;
    pthread_t t;
    struct waiter a;
    double t0;
    join_path(path, sizeof path, dir, "wait.store");
    OK(es_open_with(path, 0, &w));
    OK(es_open_with(path, ES_OPEN_READ_ONLY, &r));

    /* Arguments. */
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_wait(NULL, 0, 0, &pos));
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_wait(r, 0, 0, NULL));
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_wait(r, 0, -2, &pos));
    LAST_ERROR_HAS("timeout_ms");
    CHECK(pos == 99);

    /* Nothing new: 0 does not wait, a short timeout returns the same position. */
    OK(es_wait(r, 0, 0, &pos));
    CHECK(pos == 0);
    t0 = now_ms();
    OK(es_wait(r, 0, 30, &pos));
    CHECK(pos == 0);
    CHECK(now_ms() - t0 >= 25.0);

    /* A waiting reader wakes on an append. */
    memset(&a, 0, sizeof a);
    a.store = r;
    a.position = 0;
    a.timeout_ms = -1;
    CHECK(pthread_create(&t, NULL, wait_thread, &a) == 0);
    sleep_ms(30);
    append_one(w, make_uuid(2, 1), "A");
    CHECK(pthread_join(t, NULL) == 0);
    OK(a.status);
    CHECK(a.result == 1);

    /* es_wake ends a wait that would otherwise last 30 s. */
    memset(&a, 0, sizeof a);
    a.store = r;
    a.position = 1;
    a.timeout_ms = 30000;
    CHECK(pthread_create(&t, NULL, wait_thread, &a) == 0);
    sleep_ms(30);
    t0 = now_ms();
    es_wake(r);
    CHECK(pthread_join(t, NULL) == 0);
    OK(a.status);
    CHECK(a.result == 1);
    CHECK(now_ms() - t0 < 5000.0);
    es_wake(NULL); /* a no-op */

    /* On the writer's own handle too. */
    OK(es_wait(w, 0, -1, &pos));
    CHECK(pos == 1);
    es_close(r);
    es_close(w);
}

static void filtered_reads(const char *dir) {
    char path[4096];
    es_store *w = NULL;
    es_events evs = {NULL, 0, NULL};
    uint64_t next = 77;
    es_uuid a = make_uuid(3, 1), b = make_uuid(3, 2), none = make_uuid(3, 9);
    es_string types[1], prefixes[1];
    es_filter f;
    int i;
    join_path(path, sizeof path, dir, "filter.store");
    OK(es_open_with(path, 0, &w));
    for (i = 0; i < 12; i++)
        append_one(w, i % 2 ? b : a, i % 3 == 0 ? "OrderPlaced" : (i % 3 == 1 ? "Invoice" : "Other"));

    memset(&f, 0, sizeof f);
    types[0] = str("Invoice");
    f.event_types = types;
    f.event_type_count = 1;
    OK(es_read_all_filtered(w, 0, 2, &f, &evs, &next));
    CHECK(evs.len == 2);
    CHECK(evs.items[0].global_position == 1 && evs.items[1].global_position == 4);
    CHECK(strcmp(evs.items[0].event_type, "Invoice") == 0);
    CHECK(next == 5);
    es_free(&evs);
    OK(es_read_all_filtered(w, next, 100, &f, &evs, &next));
    CHECK(evs.len == 2 && next == 12);
    es_free(&evs);

    /* Prefix plus stream. */
    memset(&f, 0, sizeof f);
    prefixes[0] = str("Order");
    f.event_type_prefixes = prefixes;
    f.event_type_prefix_count = 1;
    f.stream_id = &a;
    OK(es_read_all_filtered(w, 0, 100, &f, &evs, &next));
    CHECK(evs.len == 2); /* positions 0 and 6 are even (stream a) and OrderPlaced */
    CHECK(evs.items[0].global_position == 0 && evs.items[1].global_position == 6);
    es_free(&evs);
    f.stream_id = &none;
    OK(es_read_all_filtered(w, 0, 100, &f, &evs, &next));
    CHECK(evs.len == 0 && next == 12);

    /* NULL filter: everything; max_count 0: nothing; past the end: from itself. */
    OK(es_read_all_filtered(w, 3, 4, NULL, &evs, &next));
    CHECK(evs.len == 4 && next == 7);
    es_free(&evs);
    OK(es_read_all_filtered(w, 3, 0, NULL, &evs, &next));
    CHECK(evs.len == 0 && next == 3);
    OK(es_read_all_filtered(w, 50, 10, NULL, &evs, &next));
    CHECK(evs.len == 0 && next == 50);

    /* Bad arguments leave the empty result and do not write the position. */
    next = 77;
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_read_all_filtered(w, 0, 1, NULL, &evs, NULL));
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_read_all_filtered(NULL, 0, 1, NULL, &evs, &next));
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_read_all_filtered(w, 0, 1, NULL, NULL, &next));
    memset(&f, 0, sizeof f);
    f.event_type_count = 2; /* NULL array with a count */
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_read_all_filtered(w, 0, 1, &f, &evs, &next));
    LAST_ERROR_HAS("filter.event_types");
    memset(&f, 0, sizeof f);
    prefixes[0].ptr = "\xff\xfe";
    prefixes[0].len = 2;
    f.event_type_prefixes = prefixes;
    f.event_type_prefix_count = 1;
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_read_all_filtered(w, 0, 1, &f, &evs, &next));
    LAST_ERROR_HAS("UTF-8");
    prefixes[0].ptr = NULL;
    prefixes[0].len = 3;
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_read_all_filtered(w, 0, 1, &f, &evs, &next));
    CHECK(evs.items == NULL && evs.len == 0 && evs.owner == NULL);
    CHECK(next == 77);
    /* An empty prefix given as NULL with length 0 matches every type. */
    prefixes[0].len = 0;
    OK(es_read_all_filtered(w, 0, 100, &f, &evs, &next));
    CHECK(evs.len == 12);
    es_free(&evs);
    es_close(w);
}

static void subscriptions(const char *dir) {
    char path[4096];
    es_store *w = NULL, *r = NULL;
    es_subscription *sub = (es_subscription *)1, *resumed = NULL;
    es_events evs = {NULL, 0, NULL};
    es_string types[1];
    es_filter f;
    uint64_t saved, seen = 0;
    pthread_t t;
    struct next_args na;
    int i;
    join_path(path, sizeof path, dir, "sub.store");
    OK(es_open_with(path, 0, &w));
    for (i = 0; i < 10; i++)
        append_one(w, make_uuid(4, 1), i % 2 ? "Odd" : "Even");
    OK(es_open_with(path, ES_OPEN_READ_ONLY, &r));

    /* Arguments. */
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_subscribe(r, 0, NULL, NULL));
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_subscribe(NULL, 0, NULL, &sub));
    CHECK(sub == NULL);
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_subscription_next(NULL, 1, 0, &evs));
    CHECK(es_subscription_position(NULL) == 0);
    LAST_ERROR_HAS("subscription is NULL");
    es_subscription_close(NULL);

    /* Catch-up in pages, then an empty result when the time runs out. */
    memset(&f, 0, sizeof f);
    types[0] = str("Even");
    f.event_types = types;
    f.event_type_count = 1;
    OK(es_subscribe(r, 0, &f, &sub));
    CHECK(es_subscription_position(sub) == 0);
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_subscription_next(sub, 1, -7, &evs));
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_subscription_next(sub, 1, 0, NULL));
    OK(es_subscription_next(sub, 0, -1, &evs)); /* max_count 0: at once, nothing */
    CHECK(evs.len == 0 && es_subscription_position(sub) == 0);
    OK(es_subscription_next(sub, 2, 0, &evs));
    CHECK(evs.len == 2 && evs.items[1].global_position == 2);
    es_free(&evs);
    saved = es_subscription_position(sub);
    CHECK(saved == 3);
    es_subscription_close(sub);

    /* Resume from the saved position: no repeat, no gap. */
    OK(es_subscribe(r, saved, &f, &resumed));
    OK(es_subscription_next(resumed, 100, 0, &evs));
    CHECK(evs.len == 3);
    CHECK(evs.items[0].global_position == 4 && evs.items[2].global_position == 8);
    for (i = 0; i < (int)evs.len; i++)
        CHECK(strcmp(evs.items[i].event_type, "Even") == 0);
    es_free(&evs);
    OK(es_subscription_next(resumed, 100, 20, &evs));
    CHECK(evs.len == 0);
    CHECK(es_subscription_position(resumed) == 10);

    /* Live: a waiting subscription gets the next matching append. */
    memset(&na, 0, sizeof na);
    na.sub = resumed;
    CHECK(pthread_create(&t, NULL, next_thread, &na) == 0);
    sleep_ms(30);
    append_one(w, make_uuid(4, 1), "Odd");
    append_one(w, make_uuid(4, 1), "Even");
    CHECK(pthread_join(t, NULL) == 0);
    OK(na.status);
    CHECK(na.events.len == 1 && na.events.items[0].global_position == 11);
    es_free(&na.events);

    /* es_wake ends a waiting es_subscription_next with an empty result. */
    memset(&na, 0, sizeof na);
    na.sub = resumed;
    CHECK(pthread_create(&t, NULL, next_thread, &na) == 0);
    sleep_ms(30);
    es_wake(r);
    CHECK(pthread_join(t, NULL) == 0);
    OK(na.status);
    CHECK(na.events.len == 0);
    CHECK(es_subscription_position(resumed) == 12);
    es_subscription_close(resumed);

    /* NULL filter: everything, and the results outlive the subscription and store. */
    OK(es_subscribe(w, 0, NULL, &sub));
    while (1) {
        OK(es_subscription_next(sub, 5, 0, &evs));
        if (evs.len == 0)
            break;
        for (i = 0; i < (int)evs.len; i++)
            CHECK(evs.items[i].global_position == seen + (uint64_t)i);
        seen += evs.len;
        es_free(&evs);
    }
    CHECK(seen == 12);
    es_subscription_close(sub);
    OK(es_subscribe(w, 11, NULL, &sub));
    OK(es_subscription_next(sub, 5, 0, &evs));
    es_subscription_close(sub);
    es_close(r);
    es_close(w);
    CHECK(evs.len == 1 && strcmp(evs.items[0].event_type, "Even") == 0);
    es_free(&evs);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    open_with_rules(argv[1]);
    wait_and_wake(argv[1]);
    filtered_reads(argv[1]);
    subscriptions(argv[1]);
    report_passed("test_follow");
    return 0;
}
