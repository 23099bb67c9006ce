"""Messages per committed operation (raftline/bench/messages.py), from the
metrics snapshots a status carries."""

from actors.metrics import Metrics
from raftline.bench.messages import message_counts, messages_per_op


def status(server: Metrics, clerk: Metrics) -> dict:
    return {"clusters": {"c1": {"replicas": {"c1-r0": {"metrics": server.snapshot()}}}},
            "clerk_metrics": {"k1": clerk.snapshot()}}


def test_every_message_is_counted_once_by_its_sender_plus_the_application_requests_its_clerk_got():
    server, clerk = Metrics(), Metrics()
    server.count("raftline_messages_sent_total", 10, kind="AppendEntries")
    before = message_counts(status(server, clerk))
    server.count("raftline_messages_sent_total", 4, kind="AppendEntries")
    server.count("raftline_messages_sent_total", 2, kind="ClientBatchReply")
    server.count("raftline_messages_received_total", 2, kind="ClientBatch")  # the clerk counted it sent
    server.count("raftline_messages_sent_total", 9, kind="ReplicaStatusReply")  # the bench's own probe
    clerk.count("raftline_messages_sent_total", 2, kind="ClientBatch")
    clerk.count("raftline_messages_sent_total", 2, kind="ClerkReply")
    clerk.count("raftline_messages_received_total", 2, kind="ClerkCommit")
    per_op = messages_per_op(before, message_counts(status(server, clerk)), ops=2)
    assert per_op == {"total": 6.0, "by_kind": {"AppendEntries": 2.0, "ClientBatchReply": 1.0, "ClientBatch": 1.0,
                                                 "ClerkReply": 1.0, "ClerkCommit": 1.0}}


def test_an_actor_restarted_between_the_samples_counts_from_zero_and_no_op_means_no_figure():
    server, clerk = Metrics(), Metrics()
    server.count("raftline_messages_sent_total", 100, kind="AppendEntries")
    before = message_counts(status(server, clerk))
    restarted = Metrics()
    restarted.count("raftline_messages_sent_total", 6, kind="AppendEntries")
    after = message_counts(status(restarted, clerk))
    assert messages_per_op(before, after, ops=3) == {"total": 2.0, "by_kind": {"AppendEntries": 2.0}}
    assert messages_per_op(before, after, ops=0) == {}
