"""ActiveCampaign pull: `flow` (the `activecampaign-sync` flow and its tasks), `api` (typed
client and record mapping), `store` (writes), `tables` (SQLModel tables)."""
