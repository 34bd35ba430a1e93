"""The exception classes follow the C status table, one class per status."""

from __future__ import annotations

import pytest

import eventstore
from eventstore import _errors
from eventstore._store import library


def test_one_class_per_status_named_as_in_c():
    lib = library()
    assert sorted(_errors.BY_STATUS) == list(range(1, 14))
    for status, cls in _errors.BY_STATUS.items():
        assert cls.status == status
        assert issubclass(cls, eventstore.EventStoreError)
        c_name = lib.es_status_name(status).decode()
        if status <= 10:  # the statuses of 0.1; 11-13 come with the 0.2 library
            assert c_name == cls.status_name
        else:
            assert c_name in (cls.status_name, "ES_UNKNOWN")
        assert getattr(eventstore, cls.__name__) is cls


def test_invalid_argument_and_store_closed_are_value_errors():
    assert issubclass(eventstore.InvalidArgument, ValueError)
    assert issubclass(eventstore.StoreClosed, eventstore.InvalidArgument)
    assert eventstore.StoreClosed.status == 1


def test_unknown_status_is_reported_with_its_number():
    with pytest.raises(eventstore.EventStoreError) as err:
        _errors.raise_for(library(), 99)
    assert type(err.value) is eventstore.EventStoreError
    assert err.value.status == 99
    assert err.value.status_name == "ES_UNKNOWN"
    assert "unknown status 99" in str(err.value)
