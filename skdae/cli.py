"""The ``skdae`` command line (also ``python -m skdae``).

Each subcommand lives in its own module, which exposes ``add_parser(subparsers)``; the
parser it adds sets ``func`` (called with the parsed arguments, returning an exit code).

Exit codes: 0 success, 1 runtime failure (bad data, corrupt file, ...), 2 usage error,
130 interrupted.
"""

import argparse
import importlib
import sys

# Modules that each add one or more subcommands, in the order ``--help`` lists them.
_SUBCOMMAND_MODULES = ("skdae._demo", "skdae._codec_cli")


def build_parser():
    """Build the argument parser with every subcommand registered.

    The documentation's command-line reference is generated from this parser, so it says
    what ``skdae COMMAND --help`` says.

    Returns
    -------
    parser : argparse.ArgumentParser
        The ``skdae`` parser; each subcommand sets ``func``, which runs it.

    See Also
    --------
    main : Parse a command line and run it.

    Examples
    --------
    >>> from skdae.cli import build_parser
    >>> args = build_parser().parse_args(["info", "test.skz", "--json"])
    >>> args.command, args.archive, args.json
    ('info', 'test.skz', True)
    """
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="skdae",
        description="Deep autoencoders pretrained as stacks of RBMs: demo, training and "
        "image compression.",
    )
    parser.add_argument("--version", action="version", version=f"skdae {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _SUBCOMMAND_MODULES:
        importlib.import_module(name).add_parser(subparsers)
    return parser


def main(argv=None):
    """Run the command line; return the process exit code.

    Errors in the data (a missing or corrupt file, an archive made with another model)
    are printed as one line on stderr instead of a traceback.

    Parameters
    ----------
    argv : list of str, default=None
        The arguments after the program name; ``None`` means ``sys.argv[1:]``.

    Returns
    -------
    exit_code : int
        0 success, 1 runtime failure (bad data, corrupt file, ...), 2 usage error (no
        command), 130 interrupted. Invalid options exit with 2 through argparse.

    See Also
    --------
    build_parser : The parser, with every subcommand and option.

    Examples
    --------
    >>> from skdae.cli import main
    >>> main(["info", "no-such-archive.skz"])  # the error message goes to stderr
    1
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError) as exc:
        print(f"skdae {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
