"""The `raftline` command (DESIGN.md section 8)."""

import argparse
import sys

from clerk import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="raftline", description="raftline: a sharded transactional key-value store on Raft")
    parser.add_argument("--version", action="version", version=f"raftline {__version__}")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    parser.parse_args(argv)
    print(f"raftline {__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
