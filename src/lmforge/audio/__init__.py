"""Speech in (offline recognition of a WAV file) and out (a spoken answer as a WAV file)."""
