"""Pictures (matplotlib, headless) and animations (Pillow)."""
