"""Text-to-image: a frozen text encoder, captions of the built-in image sets, prompts as conditioning."""
