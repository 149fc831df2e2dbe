"""The ``recinc`` command line: flags in, one API call, a summary line or JSON out.

The top layer: nothing below imports it. ``app`` holds the commands, ``options`` the option
groups several commands share, ``helptext`` the help derived from the configs, ``console``
the terminal output.
"""
