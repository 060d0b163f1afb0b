"""Targets: where a release lands. The questions a place answers (base), the docker engine's
answers, local or over SSH (engine), and what a target holds: observe, records (ledger), the
lock, the recreate mark, and how images reach it (ship, registry). Importing the package
imports none of them."""
