"""Type stub of the llhttp binding: its contract is its twin's, parser_py.py.

Typed as the twin's own names, so code that imports either one (http_py.py picks
by its module name) type-checks against a single set of classes.
"""

from fastasgi._speedups.parser_py import DESCRIPTION as DESCRIPTION
from fastasgi._speedups.parser_py import Event as Event
from fastasgi._speedups.parser_py import Head as Head
from fastasgi._speedups.parser_py import ParseError as ParseError
from fastasgi._speedups.parser_py import RequestParser as RequestParser
