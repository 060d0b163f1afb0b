from immutdock.cli import main

main()
