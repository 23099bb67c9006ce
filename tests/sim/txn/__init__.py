"""Whole simulated clusters of `actors.replica.Replica` with simulated
clerks and a simulated coordinator: workloads, the ground truth they are
judged against, and reconfiguration under faults."""
