from resgate.cli import main

main()
