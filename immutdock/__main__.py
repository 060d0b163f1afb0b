from immutdock.cli.entry import run

run()
