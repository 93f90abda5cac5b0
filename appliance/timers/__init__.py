"""Timers and alarms: kept in the state directory, rung on the speaker.

`book` holds what is set (and survives restarts and reboots), `clock` the time they are
measured against (a manual clock in `fakes` for tests), `keeper` waits for the next one
due, `ringer` rings it. The model sets them through `appliance.tools.timers`.
"""
