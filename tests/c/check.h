/*
 * check.h: the few helpers the C tests share. A failed check prints where, what it
 * expected, the status names and es_last_error(), and exits with status 1.
 * Every test program takes one argument: a directory it may create files in.
 */
#ifndef ES_TEST_CHECK_H
#define ES_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eventstore.h"

static int checks_run = 0;

/* How a check is counted; a multi-threaded test defines it to count under a lock. */
#ifndef COUNT_CHECK
#define COUNT_CHECK() (checks_run++)
#endif

#define CHECK(cond)                                                                  \
    do {                                                                             \
        COUNT_CHECK();                                                               \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: check failed: %s\n  es_last_error: %s\n",       \
                    __FILE__, __LINE__, #cond, es_last_error());                     \
            exit(1);                                                                 \
        }                                                                            \
    } while (0)

/* Checks that `call` returns `want`. */
#define EXPECT(want, call)                                                           \
    do {                                                                             \
        es_status got_ = (call);                                                     \
        COUNT_CHECK();                                                               \
        if (got_ != (want)) {                                                        \
            fprintf(stderr, "%s:%d: %s\n  returned %s, expected %s\n"               \
                    "  es_last_error: %s\n",                                         \
                    __FILE__, __LINE__, #call, es_status_name(got_),                 \
                    es_status_name(want), es_last_error());                          \
            exit(1);                                                                 \
        }                                                                            \
    } while (0)

#define OK(call) EXPECT(ES_OK, call)

/* Checks that the thread's last error contains `needle`. */
#define LAST_ERROR_HAS(needle)                                                       \
    do {                                                                             \
        COUNT_CHECK();                                                               \
        if (strstr(es_last_error(), (needle)) == NULL) {                             \
            fprintf(stderr, "%s:%d: es_last_error() lacks \"%s\": %s\n",            \
                    __FILE__, __LINE__, (needle), es_last_error());                  \
            exit(1);                                                                 \
        }                                                                            \
    } while (0)

/* Writes `dir/name` to `out` (capacity `cap`); exits when it does not fit. */
static inline void join_path(char *out, size_t cap, const char *dir, const char *name) {
    int n = snprintf(out, cap, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= cap) {
        fprintf(stderr, "path too long: %s/%s\n", dir, name);
        exit(1);
    }
}

/* A UUID whose last byte is `n` (and first byte `tag`), for readable test streams. */
static inline es_uuid make_uuid(unsigned char tag, unsigned char n) {
    es_uuid id;
    memset(&id, 0, sizeof id);
    id.bytes[0] = tag;
    id.bytes[15] = n;
    return id;
}

/* One proposed event with a NUL-terminated type and payload (no metadata). */
static inline es_proposed_event make_event(const char *type, const char *payload) {
    es_proposed_event e;
    memset(&e, 0, sizeof e);
    e.event_type = type;
    e.event_type_len = strlen(type);
    e.payload = (const uint8_t *)payload;
    e.payload_len = payload ? strlen(payload) : 0;
    return e;
}

static inline void report_passed(const char *name) {
    printf("%s: %d checks passed\n", name, checks_run);
}

#endif /* ES_TEST_CHECK_H */
