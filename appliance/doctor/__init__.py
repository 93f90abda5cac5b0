"""`appliance doctor`: is this device ready to work, and if not, what to do about it.

Each check is a small function in a module of its own here that returns a `Result`
(pass, fail or skip, a message, and for a failure the fix). `runner.run_doctor` runs them
in order and prints one line each. Nothing heavy is imported before a check needs it:
the SDK only for the one short connect, pyalsaaudio only for the audio checks.
"""
