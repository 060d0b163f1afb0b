from immutdock.cli.main import main

main()
