"""``python -m modelmix.cli``: the modelmix command."""

from modelmix.cli._app import main

main()
