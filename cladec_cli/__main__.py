from cladec_cli.cli.main import main

main()
