"""Pictures: overlays, segment.py's overlay and pupil.png, the contact sheet, the demo report page."""
