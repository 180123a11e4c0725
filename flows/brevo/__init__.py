"""Brevo push: opted-in customers become contacts, their ids written back (see `flow`)."""
