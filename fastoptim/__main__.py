"""Command line: ``python -m fastoptim {info,demo,bench}`` and ``python -m fastoptim --version``."""
import argparse
import sys

from fastoptim._version import __version__

COMMANDS = "info, demo, bench"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fastoptim",
                                     description="fastoptim command line")
    parser.add_argument("--version", action="version", version=f"fastoptim {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{info,demo,bench}")
    sub.add_parser("info", help="print version, OpenMP, threads and build flags")
    # bench parses its own options (python -m fastoptim bench --help lists them)
    sub.add_parser("bench", help="benchmark the optimizers against their peers", add_help=False)
    # demo parses its own options too (python -m fastoptim demo --help)
    sub.add_parser("demo", help="train a small NumPy network with checkpoints and exact resume",
                   add_help=False)
    args, rest = parser.parse_known_args(argv)
    if args.command in ("bench", "demo") and "--distributed" in rest:  # under mpirun
        from importlib import import_module

        rest.remove("--distributed")
        return import_module(f"fastoptim.distributed.{args.command}").main(rest)
    if args.command == "bench":
        from fastoptim.tools.bench import main as bench_main

        return bench_main(rest)
    if args.command == "demo":
        from fastoptim.tools.demo import main as demo_main

        return demo_main(rest)
    if args.command == "info":
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        from fastoptim import show_config

        show_config()
        return 0
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    # no command: a one-line hint on stderr and exit status 2, like any other usage error
    parser.exit(2, f"{parser.prog}: error: a command is required: {COMMANDS} "
                   f"(python -m fastoptim --help for more)\n")


if __name__ == "__main__":
    sys.exit(main())
