"""What operators and researchers touch: the HDAB service, the hospital gateway,
the ``ehds`` CLI, configuration, the demo and its report.

May import: every other package of ours.
"""

__version__ = "0.1.0"
