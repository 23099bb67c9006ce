"""The two changes raftline's base makes to Thespian (actors/transport/thespian_tuning.py)."""

from coordinator.admin import prepare_environment

prepare_environment()  # installs the base, and with it the tuning

from thespian.system import systemCommon  # noqa: E402
from thespian.system.transport import ReceiveEnvelope, TransmitIntent  # noqa: E402

from actors.transport import thespian_tuning  # noqa: E402


class Expensive:
    described = 0

    def __repr__(self):
        Expensive.described += 1
        return "Expensive()"


def test_descriptions_are_built_only_when_formatted():
    envelope = ReceiveEnvelope("sender", Expensive())
    intent = TransmitIntent("target", Expensive())
    before = Expensive.described
    envelope.identify(), intent.identify()
    assert Expensive.described == before, "describing cost nothing until formatted"
    assert "Expensive()" in "%s" % envelope.identify()
    assert "Expensive()" in "%s" % intent.identify()
    assert Expensive.described == before + 2


def test_an_envelope_still_prints_as_text():
    envelope = ReceiveEnvelope("sender", Expensive())
    assert isinstance(str(envelope), str) and "Expensive()" in str(envelope)
    assert str(envelope) == ReceiveEnvelope.identify.eager(envelope)


def test_applying_twice_changes_nothing_more():
    identify = ReceiveEnvelope.identify
    thespian_tuning.apply()
    assert ReceiveEnvelope.identify is identify


def test_the_send_governor_no_longer_stalls_a_busy_actor():
    assert systemCommon.RATE_THROTTLE >= thespian_tuning.SEND_RATE_CEILING
