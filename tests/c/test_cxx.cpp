// test_cxx.cpp: eventstore.h used from C++17 (compiled with -Wall -Wextra -Werror
// -pedantic): the header's extern "C" block links, es_status is usable as an enum and
// as an int, and a small round trip works.
//
// Usage: test_cxx DIR
#include "eventstore.h"

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace {

int failures = 0;

void check(bool ok, const char *what) {
    if (!ok) {
        std::fprintf(stderr, "test_cxx: check failed: %s (es_last_error: %s)\n", what,
                     es_last_error());
        failures++;
    }
}

}  // namespace

int main(int argc, char **argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    const std::string path = std::string(argv[1]) + "/cxx.store";
    std::remove(path.c_str());

    const std::string version = std::to_string(ES_VERSION_MAJOR) + "." +
                                std::to_string(ES_VERSION_MINOR) + "." +
                                std::to_string(ES_VERSION_PATCH);
    check(version == es_version(), "version macros == es_version()");

    es_store *store = nullptr;
    es_status st = es_open(path.c_str(), &store);
    check(st == ES_OK && store != nullptr, "es_open");
    check(static_cast<int32_t>(ES_ERR_INTERNAL) == 10, "status values");
    check(std::strcmp(es_status_name(st), "ES_OK") == 0, "es_status_name(es_status)");

    es_uuid stream{};
    check(es_uuid_parse("0d2b6a46-7b1c-4c5e-9d59-7f6f4ad3a001", &stream) == ES_OK,
          "es_uuid_parse");
    const std::string type = "CxxEvent";
    const std::vector<uint8_t> payload = {1, 2, 3};
    es_proposed_event ev{};
    ev.event_type = type.data();
    ev.event_type_len = type.size();
    ev.payload = payload.data();
    ev.payload_len = payload.size();
    es_append_result result{};
    check(es_append(store, &stream, ES_EXPECTED_NO_STREAM, &ev, 1, &result) == ES_OK,
          "es_append");
    check(es_append(store, &stream, ES_EXPECTED_NO_STREAM, &ev, 1, &result) ==
              ES_ERR_WRONG_EXPECTED_VERSION,
          "conflict");

    es_events events{};
    check(es_read_stream(store, &stream, 0, UINT64_MAX, &events) == ES_OK, "es_read_stream");
    check(events.len == 1 && std::string(events.items[0].event_type) == type, "read back");
    char text[37];
    es_uuid_format(&events.items[0].stream_id, text);
    check(std::string(text) == "0d2b6a46-7b1c-4c5e-9d59-7f6f4ad3a001", "es_uuid_format");
    es_free(&events);
    es_close(store);

    if (failures != 0) {
        return 1;
    }
    std::printf("test_cxx: passed\n");
    return 0;
}
