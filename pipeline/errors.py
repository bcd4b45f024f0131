"""The one base class of every error angioflow reports to its users.

An :class:`AngioflowError` is an expected failure (bad input, a refused request, a damaged or
missing file): its message is one line that names the case or file and says how to fix it, and
the command line prints it without a traceback. Each subclass also keeps the builtin it refines
(``ValueError`` for input that cannot be used, ``OSError`` for a full disk) so that library code
catching those still does. Anything else raised is a defect.
"""


class AngioflowError(Exception):
    """An expected failure whose message tells the user what is wrong and how to fix it."""
