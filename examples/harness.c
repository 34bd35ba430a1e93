/*
 * harness.c: libeventstore from C, start to finish. Read this first.
 *
 *   make example                       # builds the library, compiles and runs this
 *   ./target/release/harness my.store  # or on a store of your choosing
 *
 * It opens a store (creating it on first use), appends to two streams with optimistic
 * concurrency, provokes a version conflict and handles it, reads one stream back,
 * pages through the whole log, and closes. Run it again: it carries on where the last
 * run stopped, because it asks each stream for its version before appending.
 *
 * Every es_* call returns an es_status; ES_OK is 0. On failure, es_last_error() tells
 * why (on the same thread, before the next es_* call).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eventstore.h"

#define DEFAULT_STORE "eventstore-example.store"
#define PAGE_SIZE 4

static es_store *store = NULL;

/* Reports a failed call and exits (a real program would handle or propagate it). */
static void fail(const char *what, es_status status) {
    fprintf(stderr, "%s failed: %s: %s\n", what, es_status_name(status), es_last_error());
    es_close(store); /* NULL-safe */
    exit(1);
}

/* The expected version to append at the end of a stream: its last version, or
 * ES_EXPECTED_NO_STREAM when it has no events yet. */
static int64_t current_version(const es_uuid *stream) {
    uint64_t version = 0;
    es_status st = es_stream_version(store, stream, &version);
    if (st == ES_ERR_STREAM_NOT_FOUND) {
        return ES_EXPECTED_NO_STREAM;
    }
    if (st != ES_OK) {
        fail("es_stream_version", st);
    }
    return (int64_t)version;
}

/* Builds an event from NUL-terminated strings; the store copies the bytes. */
static es_proposed_event event(const char *type, const char *json) {
    es_proposed_event e;
    memset(&e, 0, sizeof e); /* all-zero event_id: the library assigns one */
    e.event_type = type;
    e.event_type_len = strlen(type);
    e.metadata = (const uint8_t *)"{\"source\":\"harness\"}";
    e.metadata_len = strlen((const char *)e.metadata);
    e.payload = (const uint8_t *)json;
    e.payload_len = strlen(json);
    return e;
}

static void print_event(const es_event *e) {
    char stream[37], id[37];
    es_uuid_format(&e->stream_id, stream);
    es_uuid_format(&e->event_id, id);
    /* event_type is NUL-terminated; metadata and payload are bytes with a length. */
    printf("  #%-4" PRIu64 " %s v%-3" PRIu64 " %-16s %.*s  (event %s, at %" PRIu64 " us)\n",
           e->global_position, stream, e->stream_version, e->event_type,
           (int)e->payload_len, (const char *)e->payload, id, e->recorded_at_us);
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : DEFAULT_STORE;
    es_uuid order, customer;
    es_append_result r;
    es_events events = {NULL, 0, NULL};
    int64_t expected, conflict_expected = 0, conflict_actual = 0;
    uint64_t next;
    size_t i;
    es_status st;

    printf("libeventstore %s (header %d.%d.%d), store %s\n", es_version(), ES_VERSION_MAJOR,
           ES_VERSION_MINOR, ES_VERSION_PATCH, path);

    /* 1. Open (or create) the store. Only one handle may have it open at a time. */
    if ((st = es_open(path, &store)) != ES_OK) {
        fail("es_open", st);
    }
    printf("opened: %" PRIu64 " events so far\n", es_global_position(store));

    /* Streams are keyed by UUID. */
    if ((st = es_uuid_parse("5f1d2c3b-0000-4000-8000-00000000000a", &order)) != ES_OK ||
        (st = es_uuid_parse("5f1d2c3b-0000-4000-8000-00000000000b", &customer)) != ES_OK) {
        fail("es_uuid_parse", st);
    }

    /* 2. Append to two streams, each time saying which version we expect the stream
     *    to be at: the append fails rather than interleave with a writer we did not see. */
    {
        es_proposed_event placed[2];
        placed[0] = event("OrderPlaced", "{\"order\":\"A-1\",\"total\":42}");
        placed[1] = event("OrderPaid", "{\"order\":\"A-1\",\"amount\":42}");
        expected = current_version(&order);
        if ((st = es_append(store, &order, expected, placed, 2, &r)) != ES_OK) {
            fail("es_append(order)", st);
        }
        printf("appended %" PRIu64 " events to the order stream at versions %" PRIu64
               "..%" PRIu64 " (global positions from %" PRIu64 ")\n",
               r.count, r.first_stream_version, r.first_stream_version + r.count - 1,
               r.first_global_position);
    }
    {
        es_proposed_event seen = event("CustomerSeen", "{\"customer\":\"C-7\"}");
        if ((st = es_append(store, &customer, current_version(&customer), &seen, 1, &r)) !=
            ES_OK) {
            fail("es_append(customer)", st);
        }
        printf("appended 1 event to the customer stream at version %" PRIu64 "\n",
               r.first_stream_version);
    }

    /* 3. A version conflict, handled. `expected` is now stale: the order stream moved on.
     *    Nothing is written; the error says which stream and both versions. */
    {
        es_proposed_event shipped = event("OrderShipped", "{\"order\":\"A-1\"}");
        st = es_append(store, &order, expected, &shipped, 1, &r);
        if (st != ES_ERR_WRONG_EXPECTED_VERSION) {
            fail("the stale append (expected a conflict)", st);
        }
        printf("conflict, as expected: %s\n", es_last_error());
        if (es_last_conflict(&conflict_expected, &conflict_actual) == ES_OK) {
            printf("  (expected %" PRId64 ", the stream is at %" PRId64 ")\n",
                   conflict_expected, conflict_actual);
        }
        /* Handling it: look at the stream again (a real program would re-read its
         * events and decide again), then append at the version it now has. */
        if ((st = es_append(store, &order, current_version(&order), &shipped, 1, &r)) !=
            ES_OK) {
            fail("es_append(retry)", st);
        }
        printf("retried: OrderShipped is version %" PRIu64 "\n", r.first_stream_version);
    }

    /* 4. Read one stream. The result owns its memory until es_free. */
    if ((st = es_read_stream(store, &order, 0, UINT64_MAX, &events)) != ES_OK) {
        fail("es_read_stream", st);
    }
    printf("the order stream has %zu events:\n", events.len);
    for (i = 0; i < events.len; i++) {
        print_event(&events.items[i]);
    }
    es_free(&events);

    /* 5. Page through the whole log, PAGE_SIZE events at a time. */
    printf("the whole log, in pages of %d:\n", PAGE_SIZE);
    next = 0;
    for (;;) {
        size_t got;
        if ((st = es_read_all(store, next, PAGE_SIZE, &events)) != ES_OK) {
            fail("es_read_all", st);
        }
        for (i = 0; i < events.len; i++) {
            print_event(&events.items[i]);
        }
        got = events.len;
        es_free(&events); /* safe even on an empty or failed result */
        if (got < PAGE_SIZE) {
            break;
        }
        next += got;
    }

    /* 6. Close: the file keeps exactly the committed events; the next open finds them. */
    printf("closing with %" PRIu64 " events\n", es_global_position(store));
    es_close(store);
    return 0;
}
