"""Options shared by every test folder."""


def pytest_addoption(parser):
    parser.addoption(
        "--rewrite-golden",
        action="store_true",
        help="write the simulator's golden traces (tests/sim/testdata) anew instead of comparing against them",
    )
