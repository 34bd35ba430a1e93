/*
 * pkgconfig_consumer.c: a program built with nothing but
 * `pkg-config --cflags --libs eventstore` against an installed prefix.
 *
 * Usage: pkgconfig_consumer STORE_PATH
 */
#include <eventstore.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    es_store *store = NULL;
    es_uuid stream;
    es_proposed_event ev;
    es_events events = {NULL, 0, NULL};
    es_status st;
    if (argc != 2) {
        fprintf(stderr, "usage: %s STORE_PATH\n", argv[0]);
        return 2;
    }
    memset(&stream, 0, sizeof stream);
    stream.bytes[15] = 1;
    memset(&ev, 0, sizeof ev);
    ev.event_type = "Installed";
    ev.event_type_len = strlen(ev.event_type);
    if ((st = es_open(argv[1], &store)) != ES_OK ||
        (st = es_append(store, &stream, ES_EXPECTED_ANY, &ev, 1, NULL)) != ES_OK ||
        (st = es_read_stream(store, &stream, 0, 10, &events)) != ES_OK) {
        fprintf(stderr, "%s: %s\n", es_status_name(st), es_last_error());
        es_close(store);
        return 1;
    }
    printf("pkgconfig_consumer: libeventstore %s, %zu event(s), first type %s\n",
           es_version(), events.len, events.items[0].event_type);
    es_free(&events);
    es_close(store);
    return strcmp(es_version(), "") == 0;
}
