"""The UI-agnostic engine: configuration in, events out. Never imports textual or rich."""
