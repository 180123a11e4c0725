"""MailerLite push: production users become subscribers of one group (see `flow`)."""
