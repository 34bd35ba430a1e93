/*
 * test_threads.c: one es_store shared by 4 writer and 2 reader threads at once.
 *
 * Each writer appends batches to its own stream with exact expected versions, and
 * competes with the others on one shared stream (read its version, append with it,
 * retry on ES_ERR_WRONG_EXPECTED_VERSION). Readers page through the whole log and read
 * the writers' streams meanwhile, checking that positions and versions are contiguous
 * and that what they see only grows. At the end every event is there exactly once.
 * Also checks that es_last_error() is per thread.
 *
 * Usage: test_threads DIR
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

#define WRITERS 4
#define READERS 2
#define BATCHES 25  /* per writer, on its own stream */
#define PER_BATCH 2 /* events per batch */
#define SHARED 10   /* appends per writer to the shared stream */

static es_store *store;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int writers_done = 0;
static pthread_barrier_t barrier;
static int conflicts_seen = 0;

/* check.h's counter is not atomic; threads count under the lock. */
static void count_check(void) {
    pthread_mutex_lock(&lock);
    checks_run++;
    pthread_mutex_unlock(&lock);
}

static es_uuid own_stream(int w) { return make_uuid(0x40, (unsigned char)w); }
static es_uuid shared_stream(void) { return make_uuid(0x50, 0); }

static void *writer(void *arg) {
    int w = (int)(intptr_t)arg, b, k, conflicts = 0;
    es_uuid mine = own_stream(w), shared = shared_stream();
    char types[PER_BATCH][32], payloads[PER_BATCH][32], tag[32];
    es_proposed_event ev[PER_BATCH];
    es_append_result r;

    /* Per-thread last error: each thread fails differently, then checks its own. */
    ev[0] = make_event("Unwritten", "x");
    EXPECT(ES_ERR_INVALID_ARGUMENT, es_append(store, &mine, -100 - w, ev, 1, NULL));
    snprintf(tag, sizeof tag, "expected_version %d ", -100 - w);
    pthread_barrier_wait(&barrier);
    LAST_ERROR_HAS(tag);
    pthread_barrier_wait(&barrier);

    for (b = 0; b < BATCHES; b++) {
        for (k = 0; k < PER_BATCH; k++) {
            snprintf(types[k], sizeof types[k], "Writer%dEvent", w);
            snprintf(payloads[k], sizeof payloads[k], "w%d-v%d", w, b * PER_BATCH + k);
            ev[k] = make_event(types[k], payloads[k]);
        }
        OK(es_append(store, &mine, b == 0 ? ES_EXPECTED_NO_STREAM : (int64_t)b * PER_BATCH - 1,
                     ev, PER_BATCH, &r));
        CHECK(r.first_stream_version == (uint64_t)b * PER_BATCH && r.count == PER_BATCH);
        count_check();
    }
    for (b = 0; b < SHARED; b++) {
        snprintf(payloads[0], sizeof payloads[0], "shared-w%d-%d", w, b);
        ev[0] = make_event("Shared", payloads[0]);
        for (;;) {
            uint64_t v = 0;
            int64_t expected;
            es_status st = es_stream_version(store, &shared, &v);
            if (st == ES_ERR_STREAM_NOT_FOUND) {
                expected = ES_EXPECTED_NO_STREAM;
            } else {
                OK(st);
                expected = (int64_t)v;
            }
            st = es_append(store, &shared, expected, ev, 1, &r);
            if (st == ES_OK) {
                break;
            }
            EXPECT(ES_ERR_WRONG_EXPECTED_VERSION, st);
            {
                int64_t e = 0, a = 0;
                OK(es_last_conflict(&e, &a));
                CHECK(e == expected && a > e);
            }
            conflicts++;
        }
    }
    pthread_mutex_lock(&lock);
    writers_done++;
    conflicts_seen += conflicts;
    pthread_mutex_unlock(&lock);
    return NULL;
}

static int all_written(void) {
    int done;
    pthread_mutex_lock(&lock);
    done = writers_done == WRITERS;
    pthread_mutex_unlock(&lock);
    return done;
}

static void *reader(void *arg) {
    int r = (int)(intptr_t)arg, w, last_round = 0;
    uint64_t seen = 0, rounds = 0;
    (void)r;
    while (!last_round) {
        uint64_t next = 0, last_version[WRITERS];
        es_events page = {NULL, 0, NULL};
        size_t i;
        last_round = all_written();
        for (w = 0; w < WRITERS; w++) {
            last_version[w] = UINT64_MAX;
        }
        /* The whole log in pages of 7: contiguous positions, per-stream versions in order. */
        for (;;) {
            size_t got;
            OK(es_read_all(store, next, 7, &page));
            for (i = 0; i < page.len; i++) {
                const es_event *e = &page.items[i];
                CHECK(e->global_position == next + i);
                if (e->stream_id.bytes[0] == 0x40) {
                    w = e->stream_id.bytes[15];
                    CHECK(w < WRITERS);
                    CHECK(e->stream_version == last_version[w] + 1); /* UINT64_MAX + 1 == 0 */
                    last_version[w] = e->stream_version;
                }
            }
            got = page.len;
            next += got;
            es_free(&page);
            if (got < 7) {
                break;
            }
        }
        CHECK(next >= seen); /* acknowledged events never disappear */
        seen = next;
        /* Each writer's stream on its own. */
        for (w = 0; w < WRITERS; w++) {
            es_uuid id = own_stream(w);
            es_status st = es_read_stream(store, &id, 0, UINT64_MAX, &page);
            if (st == ES_ERR_STREAM_NOT_FOUND) {
                CHECK(page.items == NULL && page.len == 0);
                continue;
            }
            OK(st);
            CHECK(page.len % PER_BATCH == 0); /* batches are all or nothing */
            for (i = 0; i < page.len; i++) {
                CHECK(page.items[i].stream_version == i);
            }
            es_free(&page);
        }
        count_check();
        rounds++;
    }
    return (void *)(uintptr_t)rounds;
}

int main(int argc, char **argv) {
    char path[4096];
    pthread_t writers[WRITERS], readers[READERS];
    es_events all = {NULL, 0, NULL};
    es_uuid shared = shared_stream();
    uint64_t v = 0, reader_rounds = 0;
    size_t i;
    int w, per_writer[WRITERS] = {0};

    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    join_path(path, sizeof path, argv[1], "threads.store");
    remove(path);
    OK(es_open(path, &store));
    CHECK(pthread_barrier_init(&barrier, NULL, WRITERS) == 0);

    for (w = 0; w < READERS; w++) {
        CHECK(pthread_create(&readers[w], NULL, reader, (void *)(intptr_t)w) == 0);
    }
    for (w = 0; w < WRITERS; w++) {
        CHECK(pthread_create(&writers[w], NULL, writer, (void *)(intptr_t)w) == 0);
    }
    for (w = 0; w < WRITERS; w++) {
        CHECK(pthread_join(writers[w], NULL) == 0);
    }
    for (w = 0; w < READERS; w++) {
        void *rounds = NULL;
        CHECK(pthread_join(readers[w], &rounds) == 0);
        reader_rounds += (uint64_t)(uintptr_t)rounds;
    }
    pthread_barrier_destroy(&barrier);

    /* Every event exactly once. */
    CHECK(es_global_position(store) == WRITERS * (BATCHES * PER_BATCH + SHARED));
    for (w = 0; w < WRITERS; w++) {
        es_uuid id = own_stream(w);
        OK(es_stream_version(store, &id, &v));
        CHECK(v == BATCHES * PER_BATCH - 1);
    }
    OK(es_stream_version(store, &shared, &v));
    CHECK(v == WRITERS * SHARED - 1);
    OK(es_read_stream(store, &shared, 0, UINT64_MAX, &all));
    CHECK(all.len == WRITERS * SHARED);
    for (i = 0; i < all.len; i++) {
        int who = -1, n = -1;
        char text[32] = {0};
        CHECK(all.items[i].stream_version == i);
        CHECK(all.items[i].payload_len < sizeof text); /* payloads are not NUL-terminated */
        memcpy(text, all.items[i].payload, all.items[i].payload_len);
        CHECK(sscanf(text, "shared-w%d-%d", &who, &n) == 2);
        CHECK(who >= 0 && who < WRITERS && n == per_writer[who]); /* each writer in order */
        per_writer[who]++;
    }
    es_free(&all);
    es_close(store);
    printf("test_threads: %d writers, %d readers (%llu read rounds), %d conflicts retried\n",
           WRITERS, READERS, (unsigned long long)reader_rounds, conflicts_seen);
    report_passed("test_threads");
    return 0;
}
