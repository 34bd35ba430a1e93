# libeventstore: build the library, run the C example, test, install.
#
#   make example                 build the library and run examples/harness.c
#   make test                    cargo test (C tests under valgrind and ASan included),
#                                then the Python binding's tests
#   make install PREFIX=/opt/es  lib/, include/ and lib/pkgconfig/ under PREFIX

CARGO ?= cargo
PREFIX ?= /usr/local
DESTDIR ?=
# Where install-files takes the built libraries from (tests point it at cargo test's).
LIBSRC ?= target/release
# Store file the example uses; empty: the harness's default path.
EXAMPLE_STORE ?=

VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
SOMAJOR := $(firstword $(subst ., ,$(VERSION)))
# Native libraries a program linking libeventstore.a statically also needs
# (`rustc --print native-static-libs`).
LIBS_PRIVATE := -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc
CSTRICT := -std=c99 -Wall -Wextra -Werror -pedantic
PYTHON ?= python3
# A virtualenv for the Python binding's tests; the binding is pip-installed into it.
PYENV := target/pyenv
PYTEST_DEPS := pytest mypy build wheel "setuptools>=68" "setuptools-rust>=1.9"

.PHONY: all lib example test test-python install install-files

all: lib

lib:
	$(CARGO) build --release
	ln -sf libeventstore.so target/release/libeventstore.so.$(SOMAJOR)

example: lib
	$(CC) $(CSTRICT) -Iinclude examples/harness.c -Ltarget/release -leventstore \
		-o target/release/harness
	LD_LIBRARY_PATH=target/release ./target/release/harness $(EXAMPLE_STORE)

test:
	$(CARGO) test
	$(MAKE) --no-print-directory test-python

# The binding's tests run against the package as `pip install` makes it (the library
# built into it; no EVENTSTORE_LIBRARY), built with the debug profile in
# target/python so that a rerun rebuilds nothing; then mypy --strict on the package.
test-python:
	test -x $(PYENV)/bin/python || $(PYTHON) -m venv $(PYENV)
	$(PYENV)/bin/pip install -q --disable-pip-version-check $(PYTEST_DEPS)
	SETUPTOOLS_RUST_CARGO_PROFILE=dev $(PYENV)/bin/pip install -q --disable-pip-version-check \
		--no-build-isolation --no-deps ./bindings/python
	$(PYENV)/bin/python -m mypy --strict --cache-dir target/mypy-cache bindings/python/eventstore
	cd $(PYENV) && env -u EVENTSTORE_LIBRARY bin/python -m pytest -q -p no:cacheprovider \
		$(CURDIR)/bindings/python/tests

install: lib install-files

install-files:
	install -d $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include
	install -m 0755 $(LIBSRC)/libeventstore.so $(DESTDIR)$(PREFIX)/lib/libeventstore.so.$(VERSION)
	ln -sf libeventstore.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libeventstore.so.$(SOMAJOR)
	ln -sf libeventstore.so.$(SOMAJOR) $(DESTDIR)$(PREFIX)/lib/libeventstore.so
	install -m 0644 $(LIBSRC)/libeventstore.a $(DESTDIR)$(PREFIX)/lib/libeventstore.a
	install -m 0644 include/eventstore.h $(DESTDIR)$(PREFIX)/include/eventstore.h
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' \
		-e 's|@LIBS_PRIVATE@|$(LIBS_PRIVATE)|g' \
		eventstore.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/eventstore.pc
