"""Command line: ``python -m fastoptim {info,demo,bench}``."""
import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fastoptim",
                                     description="fastoptim command line")
    sub = parser.add_subparsers(dest="command", metavar="{info,demo,bench}")
    sub.add_parser("info", help="print version, OpenMP, threads and build flags")
    args, rest = parser.parse_known_args(argv)
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
