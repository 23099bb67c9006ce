"""An outside process attaching to a system on raftline's base with a given secret
file, as `python -m tests.conformance.attach_with_secret PORT SECRET_FILE`, and
asking its admin for its status: prints "reply" and the reply's class (NoneType
when none came) and exits 0, or on an exception prints the exception's class name
and message and exits 1."""

from __future__ import annotations

import sys

from tests.conformance.harness import prepare_environment


def main(argv: list[str]) -> int:
    port, secret = int(argv[0]), argv[1]
    prepare_environment()
    from thespian.actors import ActorSystem
    from thespian.system.messages.status import Thespian_StatusReq

    import actors.transport as transport

    transport.install()
    try:
        system = ActorSystem(transport.BASE_NAME, {"Admin Port": port, transport.SECRET_CAPABILITY: secret},
                             transientUnique=True)
        reply = system.ask(system._systemBase.adminAddr, Thespian_StatusReq(), 10.0)
    except Exception as error:
        print(type(error).__name__, error, flush=True)
        return 1
    print("reply", type(reply).__name__, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
