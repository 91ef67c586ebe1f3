"""One module per CLI command, each exposing `register(app)`. Import heavy libraries inside commands."""

from residency.commands import calibrate, down, explain, plan, render, status, up, verify

COMMANDS = [m.register for m in (plan, render, up, down, verify, status, calibrate, explain)]
