"""Authentication and authorisation: users, roles, tokens."""
