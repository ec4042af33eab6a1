"""Accounts: tokens and principals, passwords, login guard, tenants."""
