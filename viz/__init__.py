"""Pictures: overlays, the contact sheet, the demo report page."""
