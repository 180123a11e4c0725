"""Magento order → consumer mapping and error texts (no HTTP)."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from flows.magento.api import BadOrder, consumer_row, rest_root, search_criteria
from shared.http import provider_message


def order(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "entity_id": 7,
        "increment_id": "000000007",
        "customer_email": "  Ann.Smith@Example.COM ",
        "customer_firstname": None,
        "customer_lastname": None,
        "created_at": "2026-03-29 01:30:00",
        "store_id": 2,
        "billing_address": {
            "firstname": "Ann",
            "lastname": "Smith",
            "telephone": "+31 20 123 4567",
            "country_id": "NL",
            "city": "Amsterdam",
        },
    }
    return {**base, **fields}


def test_an_order_becomes_the_seeds_consumer() -> None:
    row = consumer_row(order(), "nl")
    assert row == {
        "email": "ann.smith@example.com",
        "first_name": "Ann",  # guest orders: names from the billing address
        "last_name": "Smith",
        "phone": "+31 20 123 4567",
        "country": "NL",
        "city": "Amsterdam",
        "store_code": "nl",
        "purchase_date": datetime(2026, 3, 29, 1, 30, tzinfo=UTC),  # UTC, no offset given
        "order_entity_id": 7,
        "order_increment_id": "000000007",
    }


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"customer_email": None}, "no email"),
        ({"customer_email": "   "}, "no email"),
        ({"created_at": "29-03-2026"}, "unreadable created_at '29-03-2026'"),
        ({"created_at": None}, "no created_at"),
        ({"billing_address": {"country_id": "Netherlands"}}, "not an ISO 3166 two-letter code"),
        ({"billing_address": {"city": "x" * 256}}, "city is longer than 255 characters"),
    ],
)
def test_an_order_that_cannot_be_a_consumer_says_why(
    change: dict[str, object], reason: str
) -> None:
    with pytest.raises(BadOrder, match=reason):
        consumer_row(order(**change), None)


def test_a_billing_email_stands_in_for_a_missing_customer_email() -> None:
    row = consumer_row(order(customer_email=None, billing_address={"email": "B@x.nl"}), None)
    assert row["email"] == "b@x.nl"


def test_magento_placeholders_are_filled_from_parameters() -> None:
    named = httpx.Response(
        401,
        json={
            "message": "The consumer isn't authorized to access %resources.",
            "parameters": {"resources": "Magento_Sales::actions_view"},
        },
    )
    listed = httpx.Response(400, json={"message": "Invalid data: %1", "parameters": ["pageSize"]})
    assert provider_message(named) == (
        "The consumer isn't authorized to access Magento_Sales::actions_view."
    )
    assert provider_message(listed) == "Invalid data: pageSize"


def test_search_criteria_always_sorts_explicitly() -> None:
    params = search_criteria([[("entity_id", "gt", "5"), ("entity_id", "in", "1,2")]], page_size=50)
    assert params == {
        "searchCriteria[filter_groups][0][filters][0][field]": "entity_id",
        "searchCriteria[filter_groups][0][filters][0][value]": "5",
        "searchCriteria[filter_groups][0][filters][0][condition_type]": "gt",
        "searchCriteria[filter_groups][0][filters][1][field]": "entity_id",
        "searchCriteria[filter_groups][0][filters][1][value]": "1,2",
        "searchCriteria[filter_groups][0][filters][1][condition_type]": "in",
        "searchCriteria[sortOrders][0][field]": "entity_id",
        "searchCriteria[sortOrders][0][direction]": "ASC",  # Magento's default is DESC
        "searchCriteria[pageSize]": "50",
        "searchCriteria[currentPage]": "1",
    }


def test_the_rest_root_comes_from_the_shop_url() -> None:
    assert rest_root("https://shop.example.com/") == "https://shop.example.com/rest/V1"
    assert rest_root("https://x.nl/index.php/rest/V1") == "https://x.nl/index.php/rest/V1"
