"""What happens to captured audio on the device before any of it may leave.

`wake` listens for the wake word on the capture stream (nothing leaves because of it);
`gate` decides which periods of an open conversation are speech and may be sent.
Each has a real detector (pymicro-wakeword, pymicro-vad, imported only when used) and a
fake beside it for unit tests.
"""
