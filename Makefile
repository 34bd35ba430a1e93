# libeventstore: build the library, run the C example, test, install.
#
#   make example                 build the library and run examples/harness.c
#   make test                    cargo test (C tests under valgrind and ASan included),
#                                then the Python binding's tests
#   make install PREFIX=/opt/es  lib/, include/, lib/pkgconfig/ and bin/eventstore under
#                                PREFIX, the libraries stripped, the .so's debug info in
#                                lib/libeventstore.so.VERSION.debug (gdb finds it)
#   make install STRIP=0         ... with the libraries as built, debug info included

CARGO ?= cargo
PREFIX ?= /usr/local
DESTDIR ?=
# Where install-files takes the built libraries from (tests point it at cargo test's).
LIBSRC ?= target/release
# Where install-bin takes the `eventstore` tool from.
BINSRC ?= target/release
# Store file the example uses; empty: the harness's default path.
EXAMPLE_STORE ?=

VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
SOMAJOR := $(firstword $(subst ., ,$(VERSION)))
# Native libraries a program linking libeventstore.a statically also needs
# (`rustc --print native-static-libs`, less -lgcc_s: libgcc_s exists only as a shared
# library, so it breaks `cc -static`; the compiler driver links the unwinder itself,
# libgcc_s in a dynamic link and libgcc_eh in a static one).
LIBS_PRIVATE := -lutil -lrt -lpthread -lm -ldl -lc
# 1: install the libraries stripped (the .so's debug info split off beside it, linked
# by .gnu_debuglink); 0: install them as built.
STRIP ?= 1
STRIP_PROGRAM ?= strip
OBJCOPY ?= objcopy
CSTRICT := -std=c99 -Wall -Wextra -Werror -pedantic
PYTHON ?= python3
# A virtualenv for the Python binding's tests; the binding is pip-installed into it.
PYENV := target/pyenv
PYTEST_DEPS := pytest mypy build wheel "setuptools>=68" "setuptools-rust>=1.9"

.PHONY: all lib example test test-python install install-files install-bin

all: lib

# Builds the library and the `eventstore` tool (the workspace's default members).
lib:
	$(CARGO) build --release
	ln -sf libeventstore.so target/release/libeventstore.so.$(SOMAJOR)

example: lib
	$(CC) $(CSTRICT) -Iinclude examples/harness.c -Ltarget/release -leventstore \
		-o target/release/harness
	LD_LIBRARY_PATH=target/release ./target/release/harness $(EXAMPLE_STORE)

test:
	$(CARGO) test --workspace
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

install: lib install-files install-bin

install-bin:
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(BINSRC)/eventstore $(DESTDIR)$(PREFIX)/bin/eventstore

install-files:
	install -d $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include
	install -m 0755 $(LIBSRC)/libeventstore.so $(DESTDIR)$(PREFIX)/lib/libeventstore.so.$(VERSION)
	ln -sf libeventstore.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libeventstore.so.$(SOMAJOR)
	ln -sf libeventstore.so.$(SOMAJOR) $(DESTDIR)$(PREFIX)/lib/libeventstore.so
	install -m 0644 $(LIBSRC)/libeventstore.a $(DESTDIR)$(PREFIX)/lib/libeventstore.a
ifeq ($(STRIP),1)
	cd $(DESTDIR)$(PREFIX)/lib && \
		$(OBJCOPY) --only-keep-debug libeventstore.so.$(VERSION) libeventstore.so.$(VERSION).debug && \
		chmod 0644 libeventstore.so.$(VERSION).debug && \
		$(STRIP_PROGRAM) --strip-unneeded libeventstore.so.$(VERSION) && \
		$(OBJCOPY) --add-gnu-debuglink=libeventstore.so.$(VERSION).debug libeventstore.so.$(VERSION) && \
		$(STRIP_PROGRAM) --strip-debug libeventstore.a
endif
	install -m 0644 include/eventstore.h $(DESTDIR)$(PREFIX)/include/eventstore.h
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' \
		-e 's|@LIBS_PRIVATE@|$(LIBS_PRIVATE)|g' \
		eventstore.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/eventstore.pc
