"""What the tests share: the node harness, child programs, peers, probes, vector readers."""
