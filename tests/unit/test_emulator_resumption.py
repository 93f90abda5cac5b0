"""The emulator's side of transparent resumption, without a network: the setup flag, the
faults aimed at a client message, and the consumed stream of a resumed conversation."""

from __future__ import annotations

from appliance.live.emulator import Fault, FaultKind, Record, Recorder, Scenario
from appliance.live.emulator import protocol as p
from appliance.live.emulator.session import MAX_HANDLES, Conversation, Hub


def test_setup_reads_transparent_in_both_casings() -> None:
    for resumption in ('{"handle":"h","transparent":true}', '{"transparent":true}'):
        setup = p.parse_setup(
            p.load(f'{{"setup":{{"model":"m","sessionResumption":{resumption}}}}}')
        )
        assert setup.session_resumption and setup.transparent
    plain = p.parse_setup(p.load('{"setup":{"model":"m","session_resumption":{}}}'))
    assert plain.session_resumption and not plain.transparent


def test_a_fault_at_a_message_fires_only_there() -> None:
    sc = Scenario(
        faults=[
            Fault(FaultKind.DROP, connection=1, at_message=5),
            Fault(FaultKind.INTERNAL, connection=1, turn=1),
        ]
    )
    assert sc.take_fault(1, None) is None  # setup
    assert sc.take_fault(1, None, 4) is None
    assert sc.take_fault(2, None, 5) is None  # another connection
    fault = sc.take_fault(1, None, 5)
    assert fault is not None and fault.kind is FaultKind.DROP
    assert sc.take_fault(1, None, 5) is None  # once
    turn = sc.take_fault(1, 1)
    assert turn is not None and turn.kind is FaultKind.INTERNAL


def test_the_consumed_stream_follows_the_lineage_across_connections() -> None:
    recorder = Recorder()
    for conn, count in ((1, 6), (2, 4)):
        recorder.add(Record(0, conn, "setup", {}, index=0))
        for i in range(1, count + 1):
            recorder.add(Record(0, conn, "audio", {}, bytes([conn, i]), index=i))
    hub = Hub(Scenario(), recorder, "k")
    # Connection 2 resumed with a handle issued after message 3 of connection 1, and has
    # consumed 2 messages since: messages 4..6 of connection 1 are not in the state.
    conv = Conversation(id=1, consumed=[(1, 3), (2, 2)])
    assert [r.data for r in hub.consumed_records(conv)] == [
        bytes([1, 1]),
        bytes([1, 2]),
        bytes([1, 3]),
        bytes([2, 1]),
        bytes([2, 2]),
    ]


def test_handles_are_bounded() -> None:
    hub = Hub(Scenario(), Recorder(), "k")
    conv = hub.new_conversation()
    first = hub.issue_handle(conv)
    for _ in range(MAX_HANDLES):
        last = hub.issue_handle(conv)
    assert len(hub.handles) == MAX_HANDLES
    assert hub.resume(first) is None and hub.resume(last) is not None
