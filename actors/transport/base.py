"""The actor-system base that runs raftline on its own transport: Thespian's
multiprocess machinery (admin, logger, one process per actor, conventions)
with `RaftlineTransport` in place of the stock TCP transport. `install()`
(in the package) makes Thespian find it as `thespian.system.raftlineTCPBase`.
"""

from thespian.system.multiprocCommon import multiprocessCommon

from actors.transport import BASE_NAME
from actors.transport.tcp import RaftlineTransport


class ActorSystemBase(multiprocessCommon):
    transportType = RaftlineTransport

    def __init__(self, system, logDefs=None):
        system.capabilities["Thespian ActorSystem Name"] = BASE_NAME
        system.capabilities["Thespian ActorSystem Version"] = 1
        system.capabilities["Thespian Watch Supported"] = True
        super().__init__(system, logDefs)
