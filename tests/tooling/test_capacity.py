"""The benchmark's billing arithmetic: DynamoDB item sizes and request units (``bench.capacity``), and
the cost per million updates built from them (``bench.cost``)."""

from __future__ import annotations

from typing import Any

from bench.capacity import item_size, number_size, read_units, value_size, write_units


def test_an_items_size_counts_attribute_names_and_values() -> None:
    # GIVEN an item with a String, a Number and a Map attribute
    item: dict[str, dict[str, Any]] = {
        "thread_id": {"S": "thread_é"},  # 9 + 9 bytes (é is 2 bytes in UTF-8)
        "lease_until": {"N": "1764000000123"},  # 11 + (13 digits -> 7) + 1
        "slots": {"M": {"m:a": {"S": "xy"}}},  # 5 + 3 + (1 + 3 + 2)
    }
    # WHEN its size is computed
    size = item_size(item)
    # THEN each attribute is its name's UTF-8 length plus its value's size
    assert size == (9 + 9) + (11 + 8) + (5 + 9)


def test_numbers_count_significant_digits_two_to_a_byte() -> None:
    # GIVEN numbers with leading and trailing zeroes, a sign and a decimal point
    # WHEN their sizes are computed
    # THEN only the significant digits count, 2 a byte, plus 1 byte
    assert number_size("1") == 2
    assert number_size("-0012300") == 3  # "123"
    assert number_size("12.5") == 3
    assert value_size({"BOOL": True}) == 1
    assert value_size({"L": [{"S": "ab"}, {"NULL": True}]}) == 3 + (1 + 2) + (1 + 1)


def test_a_write_bills_the_larger_of_the_sizes_before_and_after_per_kilobyte() -> None:
    # GIVEN writes that shrink, grow or leave a small item unchanged
    # WHEN their write units are computed
    # THEN each bills ceil(max(before, after) / 1 KB), at least 1
    assert write_units(0, 10) == 1
    assert write_units(8 * 1024 + 1, 100) == 9
    assert write_units(1024, 1024) == 1
    assert write_units(0, 0) == 1  # a failed condition on no item still bills 1


def test_a_read_bills_four_kilobytes_a_unit_half_when_eventually_consistent() -> None:
    # GIVEN an item of 4 KB + 1 byte
    # WHEN its read units are computed
    # THEN a strongly consistent read bills 2, an eventually consistent one 1
    assert read_units(4097, consistent=True) == 2.0
    assert read_units(4097, consistent=False) == 1.0


def test_a_million_updates_are_priced_from_the_per_update_figures() -> None:
    # GIVEN a measured batch: 100 updates over 10 threads, 10 requests, 20 write units, 0.4 s
    from bench.coalescing import CoalescingRun
    from bench.cost import PRICES, our_bill

    run = CoalescingRun(
        version="after",
        upstream="unthrottled",
        metadata="small",
        per_thread=10,
        state_table=True,
        updates=100,
        requests=10,
        refused=0,
        handed_back=0,
        dynamodb_calls=20,
        write_units=20,
        read_units=0.0,
        max_item_bytes=114,
        moto_busy_s=0.3,
        wall_s=0.4,
    )
    # WHEN a million such updates are priced
    bill = our_bill(run)
    # THEN each item scales from the batch: 200,000 write units, 10,000 invocations of 0.4 s at 256 MB
    assert bill.dynamodb_writes == 200_000 * PRICES.dynamodb_write_units_m / 1_000_000
    assert bill.lambda_requests == 10_000 * PRICES.lambda_requests_m / 1_000_000
    assert abs(bill.lambda_gb_s - 10_000 * 0.4 * 0.25 * PRICES.lambda_gb_s) < 1e-12
    assert bill.portkey_requests == 100_000
