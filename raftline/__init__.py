"""The `raftline` command and its tools: operate a system, bench it, verify it
under faults, judge recorded histories, and a guided demo."""
