"""The search loop: config, run store, run directory, child pool, driver.

Importing it checks that no folder ahead of this installation on ``sys.path`` (a Ray worker's ``working_dir``, the
current directory) holds a ``search``, ``controller`` or ``evaluator`` of its own: ``UserError`` names the file, where
Python would otherwise fail below with a message that names neither (``search.language.shadowing``).
"""
from search.language.shadowing import check_shadowing

check_shadowing()
