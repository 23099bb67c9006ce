"""What every simulation shares: a seeded discrete-event network, the fault
switches, the chaos driver, and the trace of every event."""
