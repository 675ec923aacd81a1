"""Tests of one module or seam each, in this process (fakes or real loopback sockets)."""
