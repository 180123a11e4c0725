"""The ActiveCampaign tables: one row per contact and per deal, their custom field values, and
the account's field definitions, pipelines, stages and users.

`ac_contact` and `ac_deal` hold the columns people query (email lower-cased and indexed; deal
title, value, currency, status, pipeline, stage, owner) and `record`, the whole enriched
record (custom fields by name, names of pipeline/stage/owner, dates in UTC, and the provider's
own record under `raw`), JSONB with a GIN index on PostgreSQL. Deleted records keep their row
with `deleted_at` set. Bookkeeping columns:

* `seen_pass`: the last full pass that listed the record (a full pass soft-deletes the rest);
* `values_as_of`: the provider time from which the stored custom field values are known
  complete. A record whose `updated_at` is not before it needs its values read again (it
  changed afterwards, or in the same second, which whole-second timestamps cannot tell apart).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from shared.models import JSONType, UTCDateTime


def _when(**options: Any) -> Any:
    return Field(default=None, sa_column=sa.Column(UTCDateTime(), **options))


def _json() -> Any:
    return Field(default=None, sa_column=sa.Column(JSONType))


class AcField(SQLModel, table=True):
    """A contact custom field definition (`GET /fields`)."""

    __tablename__ = "ac_field"

    id: int = Field(
        primary_key=True, sa_type=sa.BigInteger, sa_column_kwargs={"autoincrement": False}
    )
    title: str = Field(max_length=300)
    type: str = Field(max_length=40)
    perstag: str | None = Field(default=None, max_length=300)
    options: list[str] | None = _json()


class AcDealField(SQLModel, table=True):
    """A deal custom field definition (`GET /dealCustomFieldMeta`)."""

    __tablename__ = "ac_deal_field"

    id: int = Field(
        primary_key=True, sa_type=sa.BigInteger, sa_column_kwargs={"autoincrement": False}
    )
    label: str = Field(max_length=300)
    type: str = Field(max_length=40)
    options: list[str] | None = _json()


class AcPipeline(SQLModel, table=True):
    """A deal pipeline (`GET /dealGroups`)."""

    __tablename__ = "ac_pipeline"

    id: int = Field(
        primary_key=True, sa_type=sa.BigInteger, sa_column_kwargs={"autoincrement": False}
    )
    title: str = Field(max_length=300)
    currency: str | None = Field(default=None, max_length=10)


class AcStage(SQLModel, table=True):
    """A deal stage (`GET /dealStages`); `pipeline_id` is its pipeline."""

    __tablename__ = "ac_stage"

    id: int = Field(
        primary_key=True, sa_type=sa.BigInteger, sa_column_kwargs={"autoincrement": False}
    )
    pipeline_id: int | None = Field(default=None, sa_type=sa.BigInteger)
    title: str = Field(max_length=300)
    order: int | None = None


class AcUser(SQLModel, table=True):
    """An account user, who can own deals (`GET /users`)."""

    __tablename__ = "ac_user"

    id: int = Field(
        primary_key=True, sa_type=sa.BigInteger, sa_column_kwargs={"autoincrement": False}
    )
    username: str | None = Field(default=None, max_length=300)
    first_name: str | None = Field(default=None, max_length=300)
    last_name: str | None = Field(default=None, max_length=300)
    email: str | None = Field(default=None, max_length=300)


class AcContact(SQLModel, table=True):
    """One contact, enriched with its custom field values."""

    __tablename__ = "ac_contact"
    __table_args__ = (
        sa.Index("ix_ac_contact_email", "email"),
        sa.Index("ix_ac_contact_updated_at", "updated_at"),
        sa.Index("ix_ac_contact_record", "record", postgresql_using="gin").ddl_if(
            dialect="postgresql"
        ),
    )

    id: int = Field(
        primary_key=True, sa_type=sa.BigInteger, sa_column_kwargs={"autoincrement": False}
    )
    email: str | None = Field(default=None, max_length=320)
    first_name: str | None = Field(default=None, max_length=300)
    last_name: str | None = Field(default=None, max_length=300)
    phone: str | None = Field(default=None, max_length=100)
    created_at: datetime | None = _when()
    updated_at: datetime | None = _when()
    deleted_at: datetime | None = _when()
    values_as_of: datetime | None = _when()
    seen_pass: int | None = None
    record: dict[str, Any] | None = _json()


class AcContactValue(SQLModel, table=True):
    """One custom field value of one contact (`GET /fieldValues`), as the provider sends it."""

    __tablename__ = "ac_contact_value"

    contact_id: int = Field(primary_key=True, sa_type=sa.BigInteger)
    field_id: int = Field(primary_key=True, sa_type=sa.BigInteger)
    value: str | None = Field(default=None, sa_column=sa.Column(sa.Text()))
    seen_pass: int | None = None


class AcDeal(SQLModel, table=True):
    """One deal, enriched with pipeline, stage, owner and custom field values.

    A deal in a pipeline the API user cannot see arrives as a stub (pull §1.6): `disabled` is
    true and only id, title and status are known.
    """

    __tablename__ = "ac_deal"
    __table_args__ = (
        sa.Index("ix_ac_deal_pipeline", "pipeline", "deleted_at"),
        sa.Index("ix_ac_deal_stage_id", "stage_id"),
        sa.Index("ix_ac_deal_contact_id", "contact_id"),
        sa.Index("ix_ac_deal_updated_at", "updated_at"),
        sa.Index("ix_ac_deal_record", "record", postgresql_using="gin").ddl_if(
            dialect="postgresql"
        ),
    )

    id: int = Field(
        primary_key=True, sa_type=sa.BigInteger, sa_column_kwargs={"autoincrement": False}
    )
    title: str | None = Field(default=None, max_length=500)
    value_cents: int | None = Field(default=None, sa_type=sa.BigInteger)
    currency: str | None = Field(default=None, max_length=10)
    status: int | None = None
    pipeline_id: int | None = Field(default=None, sa_type=sa.BigInteger)
    pipeline: str | None = Field(default=None, max_length=300)
    stage_id: int | None = Field(default=None, sa_type=sa.BigInteger)
    stage: str | None = Field(default=None, max_length=300)
    owner_id: int | None = Field(default=None, sa_type=sa.BigInteger)
    owner: str | None = Field(default=None, max_length=300)
    contact_id: int | None = Field(default=None, sa_type=sa.BigInteger)
    disabled: bool = False
    created_at: datetime | None = _when()
    updated_at: datetime | None = _when()
    deleted_at: datetime | None = _when()
    values_as_of: datetime | None = _when()
    seen_pass: int | None = None
    record: dict[str, Any] | None = _json()


class AcDealValue(SQLModel, table=True):
    """One custom field value of one deal (`GET /dealCustomFieldData`)."""

    __tablename__ = "ac_deal_value"

    deal_id: int = Field(primary_key=True, sa_type=sa.BigInteger)
    field_id: int = Field(primary_key=True, sa_type=sa.BigInteger)
    value: str | None = Field(default=None, sa_column=sa.Column(sa.Text()))
    seen_pass: int | None = None
