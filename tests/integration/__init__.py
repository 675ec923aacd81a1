"""Tests with real processes: nodes, supervised children, drills (bounded in time)."""
