"""Handoff: the router that queues, assigns and hands conversations back."""
