"""Gateways: one module per side effect. The docker API (engine, wire, docker_exec), compose and
buildx (compose, spawn), SSH (ssh), this machine's processes and private files (procs, scratch, files)."""
