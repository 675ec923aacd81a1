"""The kernel's frozen public API (DESIGN.md §3): exactly these six names."""
