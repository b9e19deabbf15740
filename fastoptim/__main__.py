"""Command line: ``python -m fastoptim {info,demo,bench}``."""
import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fastoptim",
                                     description="fastoptim command line")
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
        from fastoptim.bench import main as bench_main

        return bench_main(rest)
    if args.command == "demo":
        from fastoptim.demo import main as demo_main

        return demo_main(rest)
    if args.command == "info":
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        from fastoptim import show_config

        show_config()
        return 0
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
