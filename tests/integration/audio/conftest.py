"""The real-ALSA audio tests use the shared rigs of tests/conftest.py (alsa_rig, jack_audio)."""
