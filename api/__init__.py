"""jacspec's HTTP adapter: FastAPI routes, settings, body decoding and errors. No mathematics lives here."""
