/*
 * test_errors.c: the statuses that come from the file and the OS, each provoked for
 * real from C: ES_ERR_IO (a path in a missing directory, a directory, a write over
 * RLIMIT_FSIZE), ES_ERR_INVALID_HEADER (a file of garbage), ES_ERR_CORRUPT_RECORD (a
 * flipped byte in a batch with a valid batch after it), ES_ERR_LOCKED (a second open
 * from this process, by another path, and from a child process), ES_ERR_POISONED
 * (appends after a failed write), ES_ERR_INVALID_ARGUMENT for handles a child made by fork()
 * inherited (and their close leaving the files alone), plus recovery of a torn tail and of an interrupted
 * creation; and reads that meet damage done underneath an open handle (ES_ERR_CORRUPT_RECORD,
 * ES_ERR_IO). Each failure must leave the file as it was and set es_last_error().
 *
 * Usage: test_errors DIR
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

static const char *dir;

/* Reads a whole file into a malloc'd buffer; *len gets its size. */
static unsigned char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    unsigned char *buf;
    long size;
    CHECK(f != NULL);
    CHECK(fseek(f, 0, SEEK_END) == 0);
    size = ftell(f);
    CHECK(size >= 0);
    CHECK(fseek(f, 0, SEEK_SET) == 0);
    buf = malloc((size_t)size + 1);
    CHECK(buf != NULL);
    CHECK(fread(buf, 1, (size_t)size, f) == (size_t)size);
    fclose(f);
    *len = (size_t)size;
    return buf;
}

static void spit(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    CHECK(fwrite(data, 1, len, f) == len);
    CHECK(fclose(f) == 0);
}

static size_t file_size(const char *path) {
    struct stat st;
    CHECK(stat(path, &st) == 0);
    return (size_t)st.st_size;
}

/* Opens `path` (which must be a store), appends one event with `payload`, closes. */
static void append_one(const char *path, const char *payload) {
    es_store *store = NULL;
    es_uuid s = make_uuid(0x11, 1);
    es_proposed_event ev = make_event("Appended", payload);
    OK(es_open(path, &store));
    OK(es_append(store, &s, ES_EXPECTED_ANY, &ev, 1, NULL));
    es_close(store);
}

static uint64_t count_events(const char *path) {
    es_store *store = NULL;
    uint64_t n;
    OK(es_open(path, &store));
    n = es_global_position(store);
    es_close(store);
    return n;
}

static void test_io(void) {
    char path[4096];
    es_store *store = (es_store *)(uintptr_t)1;
    join_path(path, sizeof path, dir, "no-such-directory/x.store");
    EXPECT(ES_ERR_IO, es_open(path, &store));
    CHECK(store == NULL);
    LAST_ERROR_HAS("es_open: I/O error");
    LAST_ERROR_HAS(path);
    LAST_ERROR_HAS("No such file or directory");

    store = (es_store *)(uintptr_t)1;
    EXPECT(ES_ERR_IO, es_open(dir, &store)); /* a directory */
    CHECK(store == NULL);
    LAST_ERROR_HAS(dir);
}

static void test_invalid_header(void) {
    char path[4096];
    static const char garbage[] =
        "This is not an event store. It is a text file that happens to be long enough "
        "to hold any header.";
    unsigned char *after;
    size_t len;
    es_store *store = (es_store *)(uintptr_t)1;
    join_path(path, sizeof path, dir, "garbage.store");
    spit(path, garbage, sizeof garbage);
    EXPECT(ES_ERR_INVALID_HEADER, es_open(path, &store));
    CHECK(store == NULL);
    LAST_ERROR_HAS("es_open");
    LAST_ERROR_HAS("header");
    after = slurp(path, &len); /* left unchanged */
    CHECK(len == sizeof garbage && memcmp(after, garbage, len) == 0);
    free(after);
}

/* A crash while creating the file leaves zero or a few bytes of header: that is a new store. */
static void test_interrupted_creation(void) {
    char path[4096], fresh[4096];
    unsigned char *header;
    size_t len;
    join_path(fresh, sizeof fresh, dir, "fresh.store");
    join_path(path, sizeof path, dir, "interrupted.store");
    remove(fresh);
    CHECK(count_events(fresh) == 0);
    header = slurp(fresh, &len);
    CHECK(len > 8);
    spit(path, header, 0);
    append_one(path, "from empty");
    CHECK(count_events(path) == 1);
    spit(path, header, 5);
    append_one(path, "from a partial header");
    CHECK(count_events(path) == 1);
    free(header);
}

/* A flipped byte in the first of two batches is corruption, not a torn tail. */
static void test_corrupt_record(void) {
    char path[4096];
    unsigned char *data, *after;
    size_t len, after_len, i, at = 0;
    es_store *store = (es_store *)(uintptr_t)1;
    join_path(path, sizeof path, dir, "corrupt.store");
    remove(path);
    append_one(path, "first batch: MARK-TO-DAMAGE");
    append_one(path, "second batch, valid");
    CHECK(count_events(path) == 2);

    data = slurp(path, &len);
    for (i = 0; i + 14 <= len; i++) {
        if (memcmp(data + i, "MARK-TO-DAMAGE", 14) == 0) {
            at = i;
            break;
        }
    }
    CHECK(at != 0);
    data[at + 5] ^= 0x20;
    spit(path, data, len);

    EXPECT(ES_ERR_CORRUPT_RECORD, es_open(path, &store));
    CHECK(store == NULL);
    LAST_ERROR_HAS("es_open: corrupt record at byte offset");
    after = slurp(path, &after_len); /* left unchanged */
    CHECK(after_len == len && memcmp(after, data, len) == 0);
    free(after);

    /* Mending the byte makes it a store again. */
    data[at + 5] ^= 0x20;
    spit(path, data, len);
    CHECK(count_events(path) == 2);
    free(data);
}

/* Damage done underneath an open handle (by another writer of the file) is found by
 * reads: a flipped byte is ES_ERR_CORRUPT_RECORD, a file cut short is ES_ERR_IO. */
static void test_damage_while_open(void) {
    char path[4096];
    unsigned char *data;
    size_t len, i, at = 0;
    es_store *store = NULL;
    es_uuid s = make_uuid(0x11, 1);
    es_events got;
    int fd;
    unsigned char flipped;
    join_path(path, sizeof path, dir, "damaged-while-open.store");
    remove(path);
    append_one(path, "READ-SIDE-MARK");
    data = slurp(path, &len);
    for (i = 0; i + 14 <= len; i++) {
        if (memcmp(data + i, "READ-SIDE-MARK", 14) == 0) {
            at = i;
            break;
        }
    }
    CHECK(at != 0);
    flipped = data[at] ^ 0x01;
    free(data);

    OK(es_open(path, &store));
    OK(es_read_stream(store, &s, 0, 10, &got));
    CHECK(got.len == 1);
    es_free(&got);
    fd = open(path, O_WRONLY);
    CHECK(fd >= 0);
    CHECK(pwrite(fd, &flipped, 1, (off_t)at) == 1);

    got.items = (const es_event *)(uintptr_t)1;
    got.len = 3;
    EXPECT(ES_ERR_CORRUPT_RECORD, es_read_stream(store, &s, 0, 10, &got));
    CHECK(got.items == NULL && got.len == 0 && got.owner == NULL);
    LAST_ERROR_HAS("es_read_stream: corrupt record at byte offset");
    EXPECT(ES_ERR_CORRUPT_RECORD, es_read_all(store, 0, 10, &got));
    CHECK(got.items == NULL && got.len == 0 && got.owner == NULL);
    LAST_ERROR_HAS("es_read_all");

    CHECK(ftruncate(fd, 16) == 0); /* shorter than the header, let alone the data */
    EXPECT(ES_ERR_IO, es_read_all(store, 0, 10, &got));
    CHECK(got.items == NULL && got.len == 0 && got.owner == NULL);
    LAST_ERROR_HAS("es_read_all: I/O error");
    LAST_ERROR_HAS(path);
    EXPECT(ES_ERR_IO, es_read_stream(store, &s, 0, 10, &got));
    CHECK(close(fd) == 0);
    es_close(store);
    remove(path);
}

/* A torn tail (the last batch cut short, nothing valid after it) is cut off. */
static void test_torn_tail(void) {
    char path[4096];
    size_t one, two;
    es_events got = {NULL, 0, NULL};
    es_store *store = NULL;
    join_path(path, sizeof path, dir, "torn.store");
    remove(path);
    append_one(path, "kept");
    one = file_size(path);
    append_one(path, "torn away by a crash");
    two = file_size(path);
    CHECK(two > one);
    CHECK(truncate(path, (off_t)(two - 3)) == 0);
    OK(es_open(path, &store));
    CHECK(es_global_position(store) == 1);
    OK(es_read_all(store, 0, 10, &got));
    CHECK(got.len == 1 && got.items[0].payload_len == 4);
    CHECK(memcmp(got.items[0].payload, "kept", 4) == 0);
    es_free(&got);
    es_close(store);
    CHECK(file_size(path) == one);
}

static void test_locked(void) {
    char path[4096], other[4096];
    es_store *first = NULL, *second = (es_store *)(uintptr_t)1;
    es_uuid s = make_uuid(0x22, 2);
    es_proposed_event ev = make_event("StillWorks", "yes");
    pid_t child;
    int wstatus = 0;
    join_path(path, sizeof path, dir, "locked.store");
    join_path(other, sizeof other, dir, "./locked.store");
    remove(path);

    OK(es_open(path, &first));
    EXPECT(ES_ERR_LOCKED, es_open(path, &second));
    CHECK(second == NULL);
    LAST_ERROR_HAS("es_open");
    LAST_ERROR_HAS("locked");
    LAST_ERROR_HAS(path);
    second = (es_store *)(uintptr_t)1;
    EXPECT(ES_ERR_LOCKED, es_open(other, &second)); /* the same file by another path */
    CHECK(second == NULL);

    /* Another process. */
    fflush(NULL);
    child = fork();
    CHECK(child >= 0);
    if (child == 0) {
        es_store *s2 = NULL;
        es_status st = es_open(path, &s2);
        if (s2 != NULL) {
            es_close(s2);
        }
        _exit((int)st);
    }
    CHECK(waitpid(child, &wstatus, 0) == child);
    CHECK(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == ES_ERR_LOCKED);

    /* The failed opens did not disturb the first handle, or its lock. */
    OK(es_append(first, &s, ES_EXPECTED_NO_STREAM, &ev, 1, NULL));
    EXPECT(ES_ERR_LOCKED, es_open(path, &second));
    es_close(first);
    OK(es_open(path, &second)); /* free again after es_close */
    CHECK(es_global_position(second) == 1);
    es_close(second);
}

/* A write that fails poisons the handle: ES_ERR_IO once, then ES_ERR_POISONED. */
static void test_poisoned(void) {
    char path[4096];
    es_store *store = NULL;
    es_uuid s = make_uuid(0x33, 3);
    static uint8_t payload[60000];
    es_proposed_event ev = make_event("Large", NULL);
    es_events got = {NULL, 0, NULL};
    struct rlimit saved, limited;
    uint64_t acked = 0, reopened;
    es_status st = ES_OK;
    int i;

    join_path(path, sizeof path, dir, "poisoned.store");
    remove(path);
    ev.payload = payload;
    ev.payload_len = sizeof payload;
    memset(payload, 'p', sizeof payload);

    OK(es_open(path, &store));
    OK(es_append(store, &s, ES_EXPECTED_NO_STREAM, &ev, 1, NULL));
    acked = 1;
    /* From now on the file may not grow: the next preallocation fails with EFBIG. */
    CHECK(signal(SIGXFSZ, SIG_IGN) != SIG_ERR);
    CHECK(getrlimit(RLIMIT_FSIZE, &saved) == 0);
    limited = saved;
    limited.rlim_cur = (rlim_t)file_size(path);
    CHECK(setrlimit(RLIMIT_FSIZE, &limited) == 0);
    for (i = 0; i < 64; i++) {
        st = es_append(store, &s, (int64_t)acked - 1, &ev, 1, NULL);
        if (st != ES_OK) {
            break;
        }
        acked++;
    }
    EXPECT(ES_ERR_IO, st);
    LAST_ERROR_HAS("es_append: I/O error");
    LAST_ERROR_HAS(path);
    LAST_ERROR_HAS("File too large");
    CHECK(setrlimit(RLIMIT_FSIZE, &saved) == 0);

    /* Refused from now on, even though the file could grow again ... */
    EXPECT(ES_ERR_POISONED, es_append(store, &s, ES_EXPECTED_ANY, &ev, 1, NULL));
    LAST_ERROR_HAS("es_append");
    LAST_ERROR_HAS("poisoned");
    EXPECT(ES_ERR_POISONED, es_append(store, &s, ES_EXPECTED_ANY, &ev, 1, NULL));
    /* ... while reads keep working and return every acknowledged event. */
    CHECK(es_global_position(store) == acked);
    OK(es_read_stream(store, &s, 0, UINT64_MAX, &got));
    CHECK(got.len == acked);
    CHECK(got.items[acked - 1].payload_len == sizeof payload);
    es_free(&got);
    es_close(store);

    /* Reopening recovers: every acknowledged batch, maybe the failed one, whole. */
    OK(es_open(path, &store));
    reopened = es_global_position(store);
    CHECK(reopened == acked || reopened == acked + 1);
    OK(es_append(store, &s, (int64_t)reopened - 1, &ev, 1, NULL));
    es_close(store);
}

/* A child made by fork() has copies of its parent's handles. Every call on them is
 * refused with ES_ERR_INVALID_ARGUMENT naming fork(), and es_close in the child
 * releases its copies without touching the files: the parent's events appended after
 * the fork (which a copy's append would overwrite and its close would cut off) and
 * its lock stay. */
static void test_forked_child(void) {
    char path[4096];
    es_store *store = NULL, *reader = NULL, *other = NULL;
    es_uuid s = make_uuid(0x44, 4);
    es_proposed_event before = make_event("BeforeFork", "1");
    es_proposed_event after = make_event("AfterFork", "2");
    int go[2];
    pid_t child;
    int wstatus = 0;
    join_path(path, sizeof path, dir, "forked.store");
    remove(path);

    OK(es_open(path, &store));
    OK(es_append(store, &s, ES_EXPECTED_NO_STREAM, &before, 1, NULL));
    OK(es_open_with(path, ES_OPEN_READ_ONLY, &reader));
    CHECK(pipe(go) == 0);
    fflush(NULL);
    child = fork();
    CHECK(child >= 0);
    if (child == 0) {
        char byte;
        uint64_t pos = 0;
        es_events got;
        if (read(go[0], &byte, 1) != 1) {
            _exit(20);
        }
        if (es_append(store, &s, ES_EXPECTED_ANY, &before, 1, NULL) != ES_ERR_INVALID_ARGUMENT) {
            _exit(21);
        }
        if (es_last_error() == NULL || strstr(es_last_error(), "fork()") == NULL) {
            _exit(22);
        }
        if (es_read_all(store, 0, 10, &got) != ES_ERR_INVALID_ARGUMENT || got.len != 0) {
            _exit(23);
        }
        if (es_wait(reader, 0, 0, &pos) != ES_ERR_INVALID_ARGUMENT) {
            _exit(24);
        }
        es_close(reader);
        es_close(store);
        _exit(0);
    }
    OK(es_append(store, &s, 0, &after, 1, NULL));
    CHECK(write(go[1], "g", 1) == 1);
    CHECK(waitpid(child, &wstatus, 0) == child);
    if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) {
        fprintf(stderr, "test_forked_child: the child ended with status %d\n", wstatus);
    }
    CHECK(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0);
    close(go[0]);
    close(go[1]);

    CHECK(es_global_position(store) == 2);
    EXPECT(ES_ERR_LOCKED, es_open(path, &other));
    OK(es_append(store, &s, 1, &after, 1, NULL));
    es_close(reader);
    es_close(store);
    CHECK(count_events(path) == 3);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    dir = argv[1];
    test_io();
    test_invalid_header();
    test_interrupted_creation();
    test_corrupt_record();
    test_torn_tail();
    test_damage_while_open();
    test_locked();
    test_poisoned();
    test_forked_child();
    report_passed("test_errors");
    return 0;
}
