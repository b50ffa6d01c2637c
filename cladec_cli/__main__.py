"""`python -m cladec_cli` runs the command line, also where no `cladec` script is on the PATH."""

from cladec_cli.cli.main import main

main()
