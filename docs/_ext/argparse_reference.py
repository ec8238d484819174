"""``.. argparse-reference:: module:function``: a command-line reference from its parser.

The function must return an :class:`argparse.ArgumentParser`. The directive writes one
section per command (the top-level parser, then each subcommand in the order ``--help``
lists them) with its usage line, its description, and every argument with its metavar,
choices, default and help, all taken from the parser itself: the page cannot drift from
what ``skdae COMMAND --help`` prints. Each section gets a label ``cli-COMMAND`` (and
``cli`` for the top level) for ``:ref:`` links.
"""

import argparse
import contextlib
import importlib
import os
import re

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

_RST_SPECIAL = re.compile(r"([\\`*_|\[\]<>])")
# Options (--data-home) and environment variables ($SKDAE_DATA_HOME) in help texts: shown
# as code, which also keeps "--" from becoming a dash.
_CODE_WORD = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*|\$[A-Z][A-Z0-9_]*)")
# Width of the usage lines, so that they fit the page's text column.
_COLUMNS = "76"


def _escape(text):
    """Plain text as reStructuredText that renders as written, options as code."""
    parts = _CODE_WORD.split(text)
    return "".join(
        f"``{part}``" if i % 2 else _RST_SPECIAL.sub(r"\\\1", part)
        for i, part in enumerate(parts)
    )


@contextlib.contextmanager
def _columns(width):
    """argparse wraps usage and help to ``$COLUMNS``."""
    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = width
    try:
        yield
    finally:
        if saved is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved


def _description(text):
    """Description lines as reST: indented blocks after a ``...:`` line become code."""
    out = []
    lines = text.strip("\n").splitlines()
    for i, line in enumerate(lines):
        following = next((ln for ln in lines[i + 1 :] if ln.strip()), "")
        starts_block = (
            line.rstrip().endswith(":")
            and not line.startswith(" ")
            and following.startswith(" ")
        )
        if line.startswith(" "):
            out.append("   " + line)  # inside a code block: verbatim
        elif starts_block:
            out += [_escape(line.rstrip()), "", ".. code-block:: console", ""]
        else:
            out.append(_escape(line))
    return out


def _subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            return [(name, sub, helps.get(name)) for name, sub in action.choices.items()]
    return []


def _argument_lines(parser, action):
    formatter = parser._get_formatter()
    if action.option_strings:
        if action.nargs == 0:
            term = ", ".join(f"``{s}``" for s in action.option_strings)
        else:
            metavar = formatter._format_args(action, action.dest.upper())
            term = ", ".join(f"``{s} {metavar}``" for s in action.option_strings)
    else:
        term = f"``{formatter._format_args(action, action.dest)}``"
    details = []
    if action.help and action.help != argparse.SUPPRESS:
        text = formatter._expand_help(action).strip()
        details.append(_escape(text if text.endswith((".", "!", "?")) else text + "."))
    if action.choices is not None and not isinstance(action, argparse._SubParsersAction):
        details.append("Choices: " + ", ".join(f"``{c}``" for c in action.choices) + ".")
    if action.required and action.option_strings:
        details.append("Required.")
    return [term, "   " + (" ".join(details) or "(no help text)"), ""]


def _command_lines(parser, name, label, summary=None):
    title = f"``{name}``"
    lines = [f".. _{label}:", "", title, "-" * len(title), ""]
    if summary:
        lines += [_escape(summary[0].upper() + summary[1:]) + ".", ""]
    lines += [".. code-block:: text", ""]
    lines += ["   " + ln for ln in parser.format_usage().rstrip().splitlines()]
    lines.append("")
    if parser.description:
        lines += _description(parser.description) + [""]
    actions = [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]
    positionals = [a for a in actions if not a.option_strings]
    options = [a for a in actions if a.option_strings]
    for heading, group in (("Arguments", positionals), ("Options", options)):
        group = [a for a in group if not isinstance(a, argparse._SubParsersAction)]
        if group:
            lines += [f"**{heading}**", ""]
            for action in group:
                lines += _argument_lines(parser, action)
    return lines


class ArgparseReference(SphinxDirective):
    required_arguments = 1
    has_content = False

    def run(self):
        module_name, _, func_name = self.arguments[0].partition(":")
        parser = getattr(importlib.import_module(module_name), func_name)()
        prog = parser.prog
        with _columns(_COLUMNS):
            lines = self._lines(parser, prog)
        container = nodes.section()
        container.document = self.state.document
        nested_parse_with_titles(self.state, StringList(lines, source="argparse-reference"), container)
        return container.children

    @staticmethod
    def _lines(parser, prog):
        lines = _command_lines(parser, prog, "cli-main")
        subcommands = _subparsers(parser)
        if subcommands:
            lines += ["**Commands**", ""]
            lines += [f"- :ref:`{prog} {n} <cli-{n}>`: {_escape(h or '')}" for n, _, h in subcommands]
            lines.append("")
        for name, sub, help_text in subcommands:
            lines += _command_lines(sub, f"{prog} {name}", f"cli-{name}", help_text)
        return lines


def setup(app):
    app.add_directive("argparse-reference", ArgparseReference)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
