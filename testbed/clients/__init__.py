"""Clients that run in containers of their own and act on the testbed's services."""
