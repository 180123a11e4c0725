"""Which customers are pushed to Brevo, and the contact each one should be.

* Only customers with `marketing_opt_in` (the seed's filter); matched to contacts by email,
  trimmed and lower-cased (the seed matches case-insensitively).
* Attributes (push §2.6): `FIRSTNAME`, `LASTNAME`, `SMS`, `USED_WELCOME_OFFER`. `SMS` must carry
  a country code; the phone is normalised to E.164 with `BREVO_DEFAULT_COUNTRY` for numbers
  written without one. A phone that cannot be normalised is left out of the contact and the
  customer gets a warning, never a failure: the rest of the contact is still worth sending.
* One contact per address: when several opted-in customers share an address, the most
  recently updated one is pushed and the others are skipped with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import phonenumbers
import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from flows.brevo.tables import Customer


@dataclass(frozen=True)
class Wanted:
    """One opted-in customer as Brevo should hold it."""

    customer_id: str
    email: str
    attributes: dict[str, Any]
    brevo_contact_id: int | None
    warning: str | None = None  # a phone left out, and why


@dataclass
class Selection:
    wanted: list[Wanted] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (customer id, reason)
    no_email: list[str] = field(default_factory=list)
    opted_out: int = 0


def normalize_email(email: str | None) -> str:
    return (email or "").strip().lower()


def e164(phone: str | None, default_country: str | None) -> tuple[str | None, str | None]:
    """(`+<digits>` or None, a warning or None) for a phone as people type it."""
    text = (phone or "").strip()
    if not text:
        return None, None
    try:
        number = phonenumbers.parse(text, (default_country or "").upper() or None)
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_valid_number(number):
        where = f" (default country {default_country})" if default_country else ""
        return None, f"phone {text!r} is not a valid number{where}: sent without SMS"
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), None


def attributes(customer: Any, sms: str | None) -> dict[str, Any]:
    """The contact's attributes; names as Brevo's English-language accounts have them."""
    values: dict[str, Any] = {
        "FIRSTNAME": (customer.first_name or "").strip(),
        "LASTNAME": (customer.last_name or "").strip(),
        "USED_WELCOME_OFFER": bool(customer.used_welcome_offer),
    }
    if sms is not None:
        values["SMS"] = sms
    return values


def find_customer(session: Session, identifier: str) -> Customer:
    """The customer a single run names, by id or by email (any case, padded).

    Raises:
        LookupError: no such customer, or the address is shared (name one by id then).
    """
    text = identifier.strip()
    customer = session.get(Customer, text)
    if customer is not None:
        return customer
    wanted = normalize_email(text)
    matches = session.exec(
        select(Customer).where(func.lower(func.trim(col(Customer.email))) == wanted)
    ).all()
    if not matches:
        raise LookupError(f"no customer with id or email {text!r}")
    if len(matches) > 1:
        ids = ", ".join(c.id for c in matches)
        raise LookupError(f"customers {ids} share the email {wanted!r}: name one by id")
    return matches[0]


def select_customers(
    session: Session, default_country: str | None, only: Customer | None = None
) -> Selection:
    """The opted-in customers (or just `only`), one per address, as contacts."""
    table = Customer.__table__  # type: ignore[attr-defined]
    query = sa.select(table).order_by(table.c.updated_at, table.c.id)
    if only is not None:
        query = query.where(table.c.id == only.id)
    selection = Selection()
    newest: dict[str, Any] = {}
    for customer in session.connection().execute(query):
        if not customer.marketing_opt_in:
            selection.opted_out += 1
            continue
        email = normalize_email(customer.email)
        if not email:
            selection.no_email.append(customer.id)
            continue
        earlier = newest.get(email)
        if earlier is not None:
            reason = f"same email as customer {customer.id}, which is pushed instead"
            selection.skipped.append((earlier.id, reason))
        newest[email] = customer  # ascending updated_at: the latest wins
    for email, customer in newest.items():
        sms, warning = e164(customer.phone, default_country)
        selection.wanted.append(
            Wanted(
                customer.id,
                email,
                attributes(customer, sms),
                customer.brevo_contact_id,
                warning,
            )
        )
    return selection
