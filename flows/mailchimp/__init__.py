"""Mailchimp push: per-owner connections, an outbox of contact changes, Sync Now."""
