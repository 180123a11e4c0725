"""Magento pull: `flow` (the `magento-sync` flow and its tasks), `api` (typed client and order
mapping), `store` (writes), `tables` (SQLModel tables)."""
