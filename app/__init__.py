"""The real-time application: capture -> inference -> render, Qt window, recording and headless processing."""
